package workers_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/capfilt/capfilt/coordinator"
	"github.com/capfilt/capfilt/internal/testutil/pipelinetest"
	"github.com/capfilt/capfilt/internal/testutil/tinyblip"
	"github.com/capfilt/capfilt/modelstage"
	"github.com/capfilt/capfilt/pipeline"
	"github.com/capfilt/capfilt/pipeline/spec"
	"github.com/capfilt/capfilt/shards"
	"github.com/capfilt/capfilt/synth"
	"github.com/capfilt/capfilt/torch"
	"github.com/capfilt/capfilt/workers"
)

// The worker subprocess of the kill and SIGTERM tests is this test binary, re-executed
// with CAPFILT_TEST_WORKER set: a real process with its own NATS connection.
func TestMain(m *testing.M) {
	if os.Getenv("CAPFILT_TEST_WORKER") != "" {
		os.Exit(helperWorker())
	}
	os.Exit(m.Run())
}

func helperWorker() int {
	torch.SetNumThreads(1)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	nc, js, err := pipeline.Connect(os.Getenv("CAPFILT_TEST_NATS"), pipeline.ConnectOptions{Name: "helper"})
	if err != nil {
		log.Error("connect", "err", err)
		return 3
	}
	defer nc.Close()
	q, err := pipeline.OpenQueue(ctx, js)
	if err != nil {
		log.Error("open queue", "err", err)
		return 3
	}
	delay, _ := time.ParseDuration(os.Getenv("CAPFILT_TEST_DELAY"))
	drain, _ := time.ParseDuration(os.Getenv("CAPFILT_TEST_DRAIN"))
	src := modelstage.NewBLIPSource(torch.CPU, torch.Float32)
	defer src.Close()
	w, err := workers.New(q, workers.Config{ID: os.Getenv("CAPFILT_TEST_WORKER"), Models: slowSource{src, delay}, BatchSize: 2,
		DecodeWorkers: 1, FetchWait: 200 * time.Millisecond, DrainTimeout: drain, Log: log})
	if err != nil {
		log.Error("new worker", "err", err)
		return 3
	}
	if err := w.Run(ctx); err != nil {
		log.Error("run", "err", err)
		return 1
	}
	return 0
}

// slowSource wraps each labeler so that every batch takes at least delay: shards then last
// long enough for a test to act on a worker in the middle of one.
type slowSource struct {
	inner workers.LabelerSource
	delay time.Duration
}

func (s slowSource) Labeler(ctx context.Context, rs pipeline.RunSettings) (workers.Labeler, error) {
	l, err := s.inner.Labeler(ctx, rs)
	if err != nil || s.delay == 0 {
		return l, err
	}
	return slowLabeler{l, s.delay}, nil
}

type slowLabeler struct {
	workers.Labeler
	delay time.Duration
}

func (l slowLabeler) Label(ctx context.Context, b workers.Batch) ([]workers.Labels, error) {
	select {
	case <-time.After(l.delay):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return l.Labeler.Label(ctx, b)
}

// startHelper starts a worker subprocess; its output goes to the test log.
func startHelper(t *testing.T, natsURL, id string, delay, drain time.Duration) *os.Process {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(t.TempDir(), id+".log"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := os.StartProcess(exe, []string{exe, "-test.run=^$"}, &os.ProcAttr{
		Env: append(os.Environ(), "CAPFILT_TEST_WORKER="+id, "CAPFILT_TEST_NATS="+natsURL,
			"CAPFILT_TEST_DELAY="+delay.String(), "CAPFILT_TEST_DRAIN="+drain.String()),
		Files: []*os.File{nil, logf, logf},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Kill()
		p.Wait()
		logf.Close()
		if t.Failed() {
			data, _ := os.ReadFile(logf.Name())
			t.Logf("worker %s log:\n%s", id, data)
		}
	})
	return p
}

// world is one test's NATS server, queue, coordinator, model and folders.
type world struct {
	nats  *pipelinetest.NATS
	q     *pipeline.Queue
	coord *coordinator.Coordinator
	store shards.Store
	model string
	in    string
	out   string
	src   *modelstage.BLIPSource
}

func newWorld(t *testing.T) *world {
	t.Helper()
	torch.SetNumThreads(1)
	n := pipelinetest.StartNATS(t)
	q := n.EnsureQueue(t)
	store := shards.OpenStore(shards.StoreConfig{})
	w := &world{nats: n, q: q, store: store, model: tinyblip.ModelDir(t, 11), in: t.TempDir(), out: t.TempDir(),
		coord: coordinator.New(q, coordinator.Config{Store: store, Version: "test"}),
		src:   modelstage.NewBLIPSource(torch.CPU, torch.Float32)}
	t.Cleanup(w.src.Close)
	return w
}

// shards writes n sample shards with a few mismatched captions and corrupt images.
func (w *world) shards(t *testing.T, n, perShard int) []string {
	t.Helper()
	paths, err := synth.WriteSampleShards(w.in, n, synth.SampleOptions{PerShard: perShard, Width: 48, Height: 40,
		MismatchRate: 0.3, CorruptRate: 0.1, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	return paths
}

func (w *world) settings(t *testing.T, run string, inputs ...string) pipeline.RunSettings {
	if len(inputs) == 0 {
		inputs = []string{filepath.Join(w.in, "*.tar")}
	}
	rs := tinyblip.RunSettings(t, run, inputs, w.out, w.model)
	// The random tiny model scores every pair between 0.48 and 0.50: this bar keeps
	// some images and rejects others.
	rs.Rule.Web, rs.Rule.Synthetic = spec.ITMOnly(0.49), spec.ITMOnly(0.49)
	rs.WithRejected = true
	return rs
}

func (w *world) submit(t *testing.T, rs pipeline.RunSettings) *coordinator.SubmitSummary {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sum, err := w.coord.Submit(ctx, rs)
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	return sum
}

// startWorkers runs n in-process workers until the test ends or stop is called.
func (w *world) startWorkers(t *testing.T, n int, src workers.LabelerSource) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range n {
		wk, err := workers.New(w.q, workers.Config{ID: fmt.Sprintf("w%d", i), Models: src, Store: w.store, BatchSize: 4,
			DecodeWorkers: 2, FetchWait: 200 * time.Millisecond, Finisher: w.coord, Version: "test",
			Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := wk.Run(ctx); err != nil {
				t.Errorf("worker %s: %v", wk.ID(), err)
			}
		}()
	}
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(stop)
	return stop
}

// waitComplete waits until every shard of the run is done or dead.
func (w *world) waitComplete(t *testing.T, run string, timeout time.Duration) *coordinator.RunStatus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	st, err := w.coord.Watch(ctx, run, 100*time.Millisecond, func(*coordinator.RunStatus) {})
	if err != nil {
		if st != nil {
			t.Fatalf("run %s not complete after %v: %v; states %v, problems %+v", run, timeout, err, st.ByState, st.Problems)
		}
		t.Fatalf("run %s not complete after %v: %v", run, timeout, err)
	}
	return st
}

// waitFor polls cond until it holds.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// outputFiles lists the output folder's entries by kind.
func outputFiles(t *testing.T, dir string) (parquet, stats, temps, other []string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		switch n := e.Name(); {
		case strings.HasPrefix(n, ".capfilt-tmp-"):
			temps = append(temps, n)
		case strings.HasSuffix(n, ".stats.json"):
			stats = append(stats, n)
		case strings.HasSuffix(n, ".parquet"):
			parquet = append(parquet, n)
		default:
			other = append(other, n)
		}
	}
	return
}

// checkOutputs verifies a complete run: every shard done, its Parquet holding one row per
// accepted image, its stats balanced and matching the state, and the manifest complete.
func (w *world) checkOutputs(t *testing.T, run string, out shards.URL, wantShards int) *coordinator.Manifest {
	t.Helper()
	ctx := context.Background()
	// The worker that settles a run's last job writes the manifest just after the state.
	var m *coordinator.Manifest
	waitFor(t, 10*time.Second, "the manifest of a complete run", func() bool {
		var err error
		m, err = coordinator.ReadManifest(ctx, w.store, out)
		return err == nil && m.Complete && m.Done == wantShards
	})
	if !m.Complete || m.Done != wantShards || len(m.Shards) != wantShards || m.Dead != 0 {
		t.Fatalf("manifest: complete %v, %d done, %d dead, %d shards; want %d done", m.Complete, m.Done, m.Dead, len(m.Shards), wantShards)
	}
	var total pipeline.Counts
	for _, s := range m.Shards {
		if !s.Counts.Balanced() || s.Counts.Read == 0 {
			t.Errorf("shard %s: read %d != accepted %d + rejected %d + skipped %d", s.ID, s.Counts.Read, s.Counts.Accepted, s.Counts.Rejected, s.Counts.Skipped)
		}
		total.Add(s.Counts)
		ou, _ := shards.ParseURL(s.Output)
		r, err := w.store.OpenAt(ctx, ou)
		if err != nil {
			t.Fatalf("shard %s output: %v", s.ID, err)
		}
		cr, err := shards.OpenCleaned(r, s.Output, shards.CleanedReadOptions{SkipImages: true})
		if err != nil {
			t.Fatalf("shard %s output: %v", s.ID, err)
		}
		if cr.NumRows() != s.Counts.Accepted {
			t.Errorf("shard %s: %d rows, %d accepted", s.ID, cr.NumRows(), s.Counts.Accepted)
		}
		if got := cr.Meta().RunID; got != run {
			t.Errorf("shard %s: file says run %q", s.ID, got)
		}
		cr.Close()
		r.Close()
		su, _ := shards.ParseURL(s.Stats)
		st, err := shards.ReadStats(ctx, w.store, su)
		if err != nil {
			t.Fatalf("shard %s stats: %v", s.ID, err)
		}
		if err := st.Check(); err != nil {
			t.Error(err)
		}
		if st.SamplesRead != s.Counts.Read || st.ImagesKept != s.Counts.Accepted || st.SamplesSkipped != s.Counts.Skipped {
			t.Errorf("shard %s: stats %d/%d/%d, state %+v", s.ID, st.SamplesRead, st.ImagesKept, st.SamplesSkipped, s.Counts)
		}
	}
	if total != m.Totals {
		t.Errorf("manifest totals %+v, shards add up to %+v", m.Totals, total)
	}
	return m
}
