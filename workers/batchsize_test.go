package workers_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/capfilt/capfilt/modelstage"
	"github.com/capfilt/capfilt/pipeline"
	"github.com/capfilt/capfilt/shards"
	"github.com/capfilt/capfilt/synth"
	"github.com/capfilt/capfilt/workers"
)

// smallDevice is a model stage on a device that holds at most fits images per batch: a
// bigger batch fails the way a CUDA out-of-memory does.
type smallDevice struct {
	modelstage.PassThrough
	fits int

	mu    sync.Mutex
	tried []int // batch sizes asked for
}

func (d *smallDevice) Label(ctx context.Context, b workers.Batch) ([]workers.Labels, error) {
	d.mu.Lock()
	d.tried = append(d.tried, b.Len())
	d.mu.Unlock()
	if b.Len() > d.fits {
		return nil, fmt.Errorf("model stage: CUDA out of memory on %d images: %w", b.Len(), workers.ErrOutOfMemory)
	}
	return d.PassThrough.Label(ctx, b)
}

func (d *smallDevice) Labeler(context.Context, pipeline.RunSettings) (workers.Labeler, error) {
	return d, nil
}

// MemoryStats makes the stage look like it sits on a GPU, so an automatic batch size is
// searched for.
func (d *smallDevice) MemoryStats() (map[string]int64, bool) {
	return map[string]int64{"allocated": int64(d.fits) << 20}, true
}

func TestOutOfMemoryBatchIsSplitAndTheSizeThatFitIsKept(t *testing.T) {
	w := newWorld(t)
	// 48 good images, so that every image is labelled whatever the batches' sizes.
	if _, err := synth.WriteSampleShards(w.in, 1, synth.SampleOptions{PerShard: 48, Width: 32, Height: 32}); err != nil {
		t.Fatal(err)
	}
	w.submit(t, w.settings(t, "oom"))
	dev := &smallDevice{PassThrough: modelstage.PassThrough{Side: 32}, fits: 5}
	reg := prometheus.NewRegistry()
	metrics, err := workers.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	wk, err := workers.New(w.q, workers.Config{ID: "small-gpu", Models: dev, Store: w.store, BatchSize: 16,
		FetchWait: 100 * time.Millisecond, Metrics: metrics, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { wk.Run(ctx); close(done) }()
	st := w.waitComplete(t, "oom", 30*time.Second)
	cancel()
	<-done

	if st.ByState[pipeline.Done] != 1 {
		t.Fatalf("a shard whose batches ran out of memory failed: %+v", st.Problems)
	}
	states, _ := w.q.RunShardStates(context.Background(), "oom")
	shard := states["00000"]
	if shard.BatchSize != 4 || shard.OOMSplits < 3 || wk.BatchSize() != 4 {
		t.Fatalf("shard state batch size %d after %d splits, worker %d; want 4 (16 → 8 → 4) after at least 3",
			shard.BatchSize, shard.OOMSplits, wk.BatchSize())
	}
	if shard.Counts != (pipeline.Counts{Read: 48, Accepted: 48}) {
		t.Fatalf("pass-through keeps every decoded image: %+v", shard.Counts)
	}
	if got := gauge(t, reg, "capfilt_worker_batch_size"); got != 4 {
		t.Errorf("batch size metric %v", got)
	}
	if got := gauge(t, reg, "capfilt_worker_oom_splits_total"); got != float64(shard.OOMSplits) {
		t.Errorf("OOM split metric %v, state %d", got, shard.OOMSplits)
	}
	if got := gauge(t, reg, "capfilt_worker_images_total"); got != 48 {
		t.Errorf("images metric %v, want 48", got)
	}
}

// gauge sums a metric family's samples.
func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			sum += m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	return sum
}

func TestSizeAfterOutOfMemoryIsTheLargestSeenToFit(t *testing.T) {
	dev := &smallDevice{PassThrough: modelstage.PassThrough{Side: 4}, fits: 5}
	sizer := workers.NewBatchSizer(4)
	batch := func(n int) workers.Batch {
		b := workers.Batch{Pixels: make([]float32, n*3*4*4), Size: 4}
		for i := range n {
			b.Keys, b.Captions, b.Sources = append(b.Keys, fmt.Sprint(i)), append(b.Captions, []string{"x"}), append(b.Sources, shards.SourceWeb)
		}
		return b
	}
	for _, n := range []int{4, 6} { // 4 fits; then a batch of 6 (a shard's tail formed earlier) does not
		if _, err := workers.LabelSplitting(context.Background(), dev, batch(n), sizer); err != nil {
			t.Fatal(err)
		}
	}
	if sizer.Size() != 4 || sizer.Splits() != 1 {
		t.Fatalf("size %d after %d splits; want 4 (seen to fit), not 3 (half of 6)", sizer.Size(), sizer.Splits())
	}
}

func TestSingleImageThatDoesNotFitFailsTheBatch(t *testing.T) {
	dev := &smallDevice{PassThrough: modelstage.PassThrough{Side: 8}, fits: 0}
	b := workers.Batch{Pixels: make([]float32, 3*3*8*8), Keys: []string{"a", "b", "c"},
		Captions: [][]string{{"x"}, {"y"}, {"z"}}, Sources: []string{shards.SourceWeb, shards.SourceWeb, shards.SourceWeb}, Size: 8}
	sizer := workers.NewBatchSizer(3)
	_, err := workers.LabelSplitting(context.Background(), dev, b, sizer)
	if err == nil || !errors.Is(err, workers.ErrOutOfMemory) {
		t.Fatalf("err %v", err)
	}
	if sizer.Size() != 1 {
		t.Fatalf("size %d after splitting down to single images", sizer.Size())
	}
}

func TestFindBatchSizeFindsTheLargestThatFits(t *testing.T) {
	for _, tc := range []struct {
		name               string
		fits, start, limit int
		wantLo, wantHi     int // the answer lies in [wantLo, wantHi]
		wantErr            bool
	}{
		{"between two doublings", 37, 8, 512, 33, 37, false},
		{"exactly a doubling", 64, 8, 512, 64, 64, false},
		{"capped by the limit", 1000, 8, 100, 100, 100, false},
		{"below the start size", 3, 8, 512, 3, 3, false},
		{"nothing fits", 0, 8, 512, 0, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dev := &smallDevice{PassThrough: modelstage.PassThrough{Side: 4}, fits: tc.fits}
			got, err := workers.FindBatchSize(context.Background(), dev, tc.start, tc.limit)
			if tc.wantErr {
				if err == nil || !errors.Is(err, workers.ErrOutOfMemory) {
					t.Fatalf("got %d, err %v; want an out-of-memory error", got, err)
				}
				return
			}
			if err != nil || got < tc.wantLo || got > tc.wantHi {
				t.Fatalf("got %d (%v), want %d..%d; probes %v", got, err, tc.wantLo, tc.wantHi, dev.tried)
			}
			if len(dev.tried) > 12 {
				t.Errorf("%d probes: %v", len(dev.tried), dev.tried)
			}
		})
	}
}

func TestAutomaticBatchSizeIsFoundAtTheFirstJob(t *testing.T) {
	w := newWorld(t)
	w.shards(t, 1, 30)
	w.submit(t, w.settings(t, "auto"))
	dev := &smallDevice{PassThrough: modelstage.PassThrough{Side: 16}, fits: 12}
	wk, err := workers.New(w.q, workers.Config{ID: "auto", Models: dev, Store: w.store, BatchSize: 0, MaxBatchSize: 64,
		FetchWait: 100 * time.Millisecond, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go wk.Run(ctx)
	w.waitComplete(t, "auto", 30*time.Second)
	states, _ := w.q.RunShardStates(context.Background(), "auto")
	if got := states["00000"]; got.BatchSize < 11 || got.BatchSize > 12 || got.OOMSplits != 0 {
		t.Fatalf("batch size %d with %d splits, want 11 or 12 found before any real batch", got.BatchSize, got.OOMSplits)
	}
}
