package workers_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/capfilt/capfilt/coordinator"
	"github.com/capfilt/capfilt/internal/testutil/pipelinetest"
	"github.com/capfilt/capfilt/pipeline"
	"github.com/capfilt/capfilt/pipeline/spec"
	"github.com/capfilt/capfilt/shards"
	"github.com/capfilt/capfilt/synth"
)

// runningWithProgress waits until some shard of the run is running on worker id (any
// worker for "") and has read samples: the worker is in the middle of a shard.
func (w *world) runningWithProgress(t *testing.T, run, id string) pipeline.ShardState {
	t.Helper()
	var found pipeline.ShardState
	waitFor(t, 30*time.Second, "a shard in progress on "+id, func() bool {
		states, err := w.q.RunShardStates(context.Background(), run)
		if err != nil {
			return false
		}
		for _, st := range states {
			if st.State == pipeline.Running && (id == "" || st.Worker == id) && st.Progress > 0 {
				found = st
				return true
			}
		}
		return false
	})
	return found
}

func TestWorkerKilledMidShardIsRedelivered(t *testing.T) {
	w := newWorld(t)
	w.shards(t, 2, 12)
	w.submit(t, w.settings(t, "killed"))
	p := startHelper(t, w.nats.URL, "doomed", 150*time.Millisecond, 0)
	victim := w.runningWithProgress(t, "killed", "doomed")

	if err := p.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.Wait()
	if _, _, temps, _ := outputFiles(t, w.out); len(temps) == 0 {
		t.Fatal("the killed worker left no unpublished file: it was not killed mid-write")
	}
	if parquet, _, _, _ := outputFiles(t, w.out); len(parquet) > 1 {
		t.Fatalf("outputs before the rerun: %v", parquet)
	}

	w.startWorkers(t, 1, w.src)
	w.waitComplete(t, "killed", 60*time.Second)
	out, _ := shards.ParseURL(w.out)
	w.checkOutputs(t, "killed", out, 2)
	parquet, stats, temps, other := outputFiles(t, w.out)
	if len(parquet) != 2 || len(stats) != 2 || len(temps) != 0 || len(other) != 2 || other[0] != coordinator.ClaimName || other[1] != coordinator.ManifestName {
		t.Fatalf("output folder: parquet %v, stats %v, temps %v, other %v", parquet, stats, temps, other)
	}
	st, _, err := w.q.ShardState(context.Background(), "killed", victim.Shard.ID)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != pipeline.Done || st.Worker != "w0" || st.Attempts != 2 {
		t.Fatalf("killed shard: %s on %s after %d attempts, want done on w0 after 2", st.State, st.Worker, st.Attempts)
	}
}

// A shard that is no tar at all is dead after one attempt: every other attempt would
// fail the same way, and the run ends in seconds, not after the whole backoff.
func TestPoisonShardGoesDeadThenRetryRequeuesIt(t *testing.T) {
	w := newWorld(t)
	w.shards(t, 3, 4)
	poison := filepath.Join(w.in, "00003.tar")
	if err := os.WriteFile(poison, []byte(strings.Repeat("not a tar archive\n", 40)), 0o644); err != nil {
		t.Fatal(err)
	}
	rs := w.settings(t, "poison")
	rs.Queue.Backoff = spec.Backoff{time.Minute} // a retry would show as a run that does not end
	w.submit(t, rs)
	began := time.Now()
	w.startWorkers(t, 2, w.src)
	st := w.waitComplete(t, "poison", 60*time.Second)
	if d := time.Since(began); d > 20*time.Second {
		t.Errorf("the run took %v", d)
	}

	if st.ByState[pipeline.Done] != 3 || st.ByState[pipeline.Dead] != 1 || len(st.Problems) != 1 {
		t.Fatalf("states %v, problems %+v", st.ByState, st.Problems)
	}
	dead := st.Problems[0]
	if dead.Shard.URL.String() != poison || dead.Attempts != 1 || !strings.Contains(dead.LastError, "00003.tar") ||
		!strings.Contains(dead.LastError, "not a tar") || !strings.Contains(dead.LastError, "not retried") {
		t.Fatalf("dead shard %s after %d attempts with error %q; want %s dead after 1, saying why", dead.Shard.URL, dead.Attempts,
			dead.LastError, poison)
	}
	out, _ := shards.ParseURL(w.out)
	var m *coordinator.Manifest
	waitFor(t, 10*time.Second, "the manifest", func() bool {
		var err error
		m, err = coordinator.ReadManifest(context.Background(), w.store, out)
		return err == nil
	})
	if !m.Complete || m.Dead != 1 || m.Shards[3].State != pipeline.Dead || m.Shards[3].Error != dead.LastError {
		t.Fatalf("manifest: complete %v, dead %d, shard 3 %+v", m.Complete, m.Dead, m.Shards[3])
	}

	// Mend the shard, then retry the dead ones: the stream no longer holds their jobs.
	f, err := os.Create(poison)
	if err != nil {
		t.Fatal(err)
	}
	if err := synth.WriteSampleShard(f, 3, synth.SampleOptions{PerShard: 4, Width: 48, Height: 40, Seed: 3}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	refs, err := w.coord.Retry(context.Background(), coordinator.RetryRequest{Run: "poison", Dead: true})
	if err != nil || len(refs) != 1 || refs[0].URL.String() != poison {
		t.Fatalf("retry: %v %+v", err, refs)
	}
	st = w.waitComplete(t, "poison", 30*time.Second)
	if st.ByState[pipeline.Done] != 4 {
		t.Fatalf("after retry: %v %+v", st.ByState, st.Problems)
	}
	m = w.checkOutputs(t, "poison", out, 4)
	if m.Shards[3].Retry != 1 || m.Shards[3].Attempts != 1 {
		t.Fatalf("retried shard: retry %d, attempts %d", m.Shards[3].Retry, m.Shards[3].Attempts)
	}
}

func TestResubmitPublishesNoDuplicateJobs(t *testing.T) {
	w := newWorld(t)
	w.shards(t, 4, 3)
	rs := w.settings(t, "again")
	first := w.submit(t, rs)
	second := w.submit(t, rs)
	if first.Published != 4 || first.Resubmit || second.Published != 0 || second.Known != 4 || !second.Resubmit {
		t.Fatalf("first %+v, second %+v", first, second)
	}
	// Lose a shard's state: the stream's dedup window still drops the second publish.
	_, js := w.nats.Connect(t)
	kv, err := js.KeyValue(context.Background(), pipeline.ShardsBucket)
	if err != nil {
		t.Fatal(err)
	}
	if err := kv.Delete(context.Background(), pipeline.ShardKey("again", first.Shards[2].ID)); err != nil {
		t.Fatal(err)
	}
	third := w.submit(t, rs)
	if third.Published != 0 {
		t.Fatalf("after losing a state, a re-submit published %d jobs", third.Published)
	}
	if n, err := w.q.PendingJobs(context.Background(), "again"); err != nil || n != 4 {
		t.Fatalf("%d jobs in the stream (%v), want 4", n, err)
	}

	w.startWorkers(t, 2, w.src)
	w.waitComplete(t, "again", 60*time.Second)
	out, _ := shards.ParseURL(w.out)
	w.checkOutputs(t, "again", out, 4)
	before := modTimes(t, w.out)

	// After the run, with the dedup window long gone as far as the KV check cares.
	fourth := w.submit(t, rs)
	if fourth.Published != 0 || fourth.Known != 4 {
		t.Fatalf("re-submit after the run: %+v", fourth)
	}
	time.Sleep(500 * time.Millisecond) // time for a wrongly published job to be processed
	for name, mt := range modTimes(t, w.out) {
		if !before[name].Equal(mt) {
			t.Errorf("%s rewritten by a re-submit", name)
		}
	}

	other := rs
	other.Rule.Web = spec.ITMOnly(0.9)
	_, err = w.coord.Submit(context.Background(), other)
	var inv *coordinator.InvalidError
	if !errors.As(err, &inv) || !strings.Contains(err.Error(), "accept rule") {
		t.Fatalf("re-submit with another rule: %v", err)
	}
}

func modTimes(t *testing.T, dir string) map[string]time.Time {
	t.Helper()
	out := map[string]time.Time{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if fi, err := e.Info(); err == nil && strings.HasSuffix(e.Name(), ".parquet") {
			out[e.Name()] = fi.ModTime()
		}
	}
	return out
}

func TestRunCompletesAcrossNATSRestart(t *testing.T) {
	w := newWorld(t)
	w.shards(t, 6, 12)
	w.submit(t, w.settings(t, "restart"))
	w.startWorkers(t, 2, slowSource{w.src, 300 * time.Millisecond})
	w.runningWithProgress(t, "restart", "")

	w.nats.Stop()
	time.Sleep(1500 * time.Millisecond) // workers go on with their shards, unable to report
	w.nats.Restart(t)

	w.waitComplete(t, "restart", 90*time.Second)
	out, _ := shards.ParseURL(w.out)
	w.checkOutputs(t, "restart", out, 6)
	if _, _, temps, _ := outputFiles(t, w.out); len(temps) != 0 {
		t.Fatalf("temps left: %v", temps)
	}
}

func TestSIGTERMFinishesOrHandsBackTheJob(t *testing.T) {
	for _, tc := range []struct {
		name  string
		drain time.Duration
		// handedBack: the stopping worker gave its shard back for another to do.
		handedBack bool
	}{
		{"drain time left: the shard finishes", 30 * time.Second, false},
		{"no drain time: the job is handed back", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			w.shards(t, 2, 10)
			w.submit(t, w.settings(t, "sigterm"))
			p := startHelper(t, w.nats.URL, "stopping", 100*time.Millisecond, tc.drain)
			victim := w.runningWithProgress(t, "sigterm", "stopping")
			if err := p.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			ps, err := p.Wait()
			if err != nil || ps.ExitCode() != 0 {
				t.Fatalf("worker after SIGTERM: %v, exit code %d", err, ps.ExitCode())
			}
			st, _, err := w.q.ShardState(context.Background(), "sigterm", victim.Shard.ID)
			if err != nil {
				t.Fatal(err)
			}
			if tc.handedBack && st.State != pipeline.Pending || !tc.handedBack && (st.State != pipeline.Done || st.Worker != "stopping") {
				t.Fatalf("shard after SIGTERM: %s on %q", st.State, st.Worker)
			}
			// Nothing is lost: another worker does the rest at once (no ack wait).
			began := time.Now()
			w.startWorkers(t, 1, w.src)
			w.waitComplete(t, "sigterm", 60*time.Second)
			if d := time.Since(began); d > pipelinetest.FastRetries().AckWait+time.Second && tc.handedBack {
				t.Errorf("the handed-back job waited %v: was it nak'd?", d)
			}
			out, _ := shards.ParseURL(w.out)
			w.checkOutputs(t, "sigterm", out, 2)
		})
	}
}

// A job for a run whose settings are gone cannot be done by anyone: it is terminated,
// not redelivered for ever.
func TestJobOfUnknownRunIsTerminated(t *testing.T) {
	w := newWorld(t)
	job := pipeline.Job{Run: "ghost", Shard: pipeline.ShardRef{ID: "00000", URL: mustURL(t, "/nowhere/0.tar")}, Output: mustURL(t, w.out)}
	if _, err := w.q.PublishJob(context.Background(), job); err != nil {
		t.Fatal(err)
	}
	w.startWorkers(t, 1, w.src)
	waitFor(t, 10*time.Second, "the ghost job to leave the stream", func() bool {
		n, err := w.q.PendingJobs(context.Background(), "ghost")
		return err == nil && n == 0
	})
}
