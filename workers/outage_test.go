package workers_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/capfilt/capfilt/coordinator"
	"github.com/capfilt/capfilt/internal/testutil"
	"github.com/capfilt/capfilt/pipeline"
	"github.com/capfilt/capfilt/pipeline/spec"
	"github.com/capfilt/capfilt/shards"
	"github.com/capfilt/capfilt/synth"
	"github.com/capfilt/capfilt/workers"
)

// The S3 server goes away for longer than the run's whole backoff budget (5 attempts 50ms
// apart) and its ack wait: the workers hold their shards, take no other work, and once S3
// is back every shard is done, none dead, none having used up an attempt.
func TestStoreOutageLongerThanTheBackoffLosesNoShard(t *testing.T) {
	w := newWorld(t)
	s3 := testutil.StartS3(t, "data")
	store := shards.OpenStore(shards.StoreConfig{S3Endpoint: s3.Endpoint, S3Region: s3.Region, S3PathStyle: true,
		S3Credentials: s3.Credentials(), S3MaxAttempts: 2, S3MaxBackoff: 20 * time.Millisecond})
	paths, err := synth.WriteSampleShards(w.in, 4, synth.SampleOptions{PerShard: 12, Width: 48, Height: 40, Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		data, _ := os.ReadFile(p)
		s3.Put(t, "data", "in/"+filepath.Base(p), data)
	}
	coord := coordinator.New(w.q, coordinator.Config{Store: store, Version: "test"})
	rs := w.settings(t, "outage", "s3://data/in/*.tar")
	rs.Output = mustURL(t, "s3://data/out/")
	if _, err := coord.Submit(context.Background(), rs); err != nil {
		t.Fatal(err)
	}
	w.store, w.coord = store, coord
	w.startWorkers(t, 2, slowSource{w.src, 200 * time.Millisecond})
	waitFor(t, 30*time.Second, "two shards in progress", func() bool { return w.count(t, "outage", pipeline.Running) == 2 })

	s3.Stop()
	outage := pipelineQueueBudget(rs.Queue) + rs.Queue.AckWait + time.Second
	time.Sleep(outage)
	states, err := w.q.RunShardStates(context.Background(), "outage")
	if err != nil {
		t.Fatal(err)
	}
	for id, st := range states {
		if st.State == pipeline.Dead || st.State == pipeline.Failed || (st.State == pipeline.Pending && st.Attempts != 0) {
			t.Errorf("during the outage shard %s is %s after %d attempts: %s", id, st.State, st.Attempts, st.LastError)
		}
	}
	// A worker waits for the store before it takes more work: the two held shards are
	// all that runs, the others wait untouched (or finished just before the outage).
	if run, rest := w.count(t, "outage", pipeline.Running), w.count(t, "outage", pipeline.Pending)+w.count(t, "outage", pipeline.Done); run != 2 || rest != 2 {
		t.Errorf("during the outage %d shards running and %d pending or done, want 2 and 2", run, rest)
	}
	s3.Restart(t)

	st := w.waitComplete(t, "outage", 60*time.Second)
	if st.ByState[pipeline.Done] != 4 {
		t.Fatalf("after the outage: %v %+v", st.ByState, st.Problems)
	}
	states, _ = w.q.RunShardStates(context.Background(), "outage")
	outages := 0
	for id, st := range states {
		if st.Attempts != 1 {
			t.Errorf("shard %s took %d attempts: the outage used some up (%s)", id, st.Attempts, st.LastError)
		}
		outages += st.Outages
	}
	if outages == 0 {
		t.Error("no shard recorded being interrupted by the outage: the test did not cut a shard off")
	}
	w.checkOutputs(t, "outage", rs.Output, 4)
}

// pipelineQueueBudget is how long a shard's attempts take to run out when each fails at
// once: the sum of the backoff waits.
func pipelineQueueBudget(q spec.Queue) time.Duration {
	var total time.Duration
	for n := 1; n < q.MaxDeliver; n++ {
		total += q.BackoffAfter(n)
	}
	return total
}

func (w *world) count(t *testing.T, run string, state pipeline.State) int {
	states, err := w.q.RunShardStates(context.Background(), run)
	if err != nil {
		return -1
	}
	n := 0
	for _, st := range states {
		if st.State == state {
			n++
		}
	}
	return n
}

// firstTryFails is a model stage whose first batch of each run fails, as a flaky GPU
// might: the shard's second attempt passes. It notes when the first attempt failed and
// when the retry came, by run.
type firstTryFails struct {
	workers.LabelerSource
	mu      sync.Mutex
	failed  map[string]time.Time // by run
	retried map[string]time.Time
}

func (f *firstTryFails) Labeler(ctx context.Context, rs pipeline.RunSettings) (workers.Labeler, error) {
	l, err := f.LabelerSource.Labeler(ctx, rs)
	return firstTryLabeler{l, f, rs.Run}, err
}

type firstTryLabeler struct {
	workers.Labeler
	f   *firstTryFails
	run string
}

func (l firstTryLabeler) Label(ctx context.Context, b workers.Batch) ([]workers.Labels, error) {
	f := l.f
	key := l.run
	f.mu.Lock()
	_, failedBefore := f.failed[key]
	_, retried := f.retried[key]
	switch {
	case !failedBefore:
		f.failed[key] = time.Now()
		f.mu.Unlock()
		return nil, fmt.Errorf("flaky model stage on %s", key)
	case !retried:
		f.retried[key] = time.Now()
	}
	f.mu.Unlock()
	return l.Labeler.Label(ctx, b)
}

// syncBuffer is a log destination for several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Two runs on one server with their own queue settings: a worker started before either
// was submitted retries each run's failed shards after that run's backoff, keeps a shard
// longer than its run's ack wait with heartbeats paced for that run, and logs each run's
// values.
func TestEachRunIsRetriedWithItsOwnQueueSettings(t *testing.T) {
	w := newWorld(t)
	var logs syncBuffer
	flaky := &firstTryFails{LabelerSource: slowSource{w.src, 400 * time.Millisecond}, failed: map[string]time.Time{}, retried: map[string]time.Time{}}
	wk, err := workers.New(w.q, workers.Config{ID: "early", Models: flaky, Store: w.store, BatchSize: 4, DecodeWorkers: 1,
		FetchWait: 200 * time.Millisecond, Finisher: w.coord, Log: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { wk.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	time.Sleep(300 * time.Millisecond) // the worker is up and asking before any run exists

	queues := map[string]spec.Queue{
		"quick":   {AckWait: time.Second, MaxDeliver: 3, Backoff: spec.Backoff{100 * time.Millisecond}},
		"patient": {AckWait: 5 * time.Second, MaxDeliver: 3, Backoff: spec.Backoff{1500 * time.Millisecond}},
	}
	for run, q := range queues {
		dir := filepath.Join(w.in, run)
		// 12 samples in batches of 4 at 400ms a batch: longer than quick's ack wait.
		if _, err := synth.WriteSampleShards(dir, 1, synth.SampleOptions{PerShard: 12, Width: 48, Height: 40, Seed: uint64(len(run))}); err != nil {
			t.Fatal(err)
		}
		rs := w.settings(t, run, filepath.Join(dir, "*.tar"))
		rs.Output = mustURL(t, filepath.Join(w.out, run))
		rs.Queue = q
		w.submit(t, rs)
	}
	for run := range queues {
		w.waitComplete(t, run, 60*time.Second)
	}
	for run, q := range queues {
		flaky.mu.Lock()
		failed, retried := flaky.failed[run], flaky.retried[run]
		flaky.mu.Unlock()
		if failed.IsZero() || retried.IsZero() {
			t.Fatalf("run %s: no failure and retry seen", run)
		}
		want := q.Backoff[0]
		if got := retried.Sub(failed); got < want || got > want+time.Second {
			t.Errorf("run %s: retried %v after its failure, want its own backoff %v", run, got, want)
		}
		st, _, err := w.q.ShardState(context.Background(), run, "00000")
		if err != nil || st.State != pipeline.Done || st.Attempts != 2 || st.Worker != "early" {
			t.Errorf("run %s: %+v (%v); want done by the worker in 2 attempts (no redelivery while it worked)", run, st, err)
		}
		line := fmt.Sprintf("run=%s ack_wait=%v max_deliver=%d backoff=%s", run, q.AckWait, q.MaxDeliver, q.Backoff)
		if !strings.Contains(logs.String(), line) {
			t.Errorf("the worker's log lacks %q:\n%s", line, logs.String())
		}
	}
}
