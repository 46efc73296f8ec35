package workers_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/capfilt/capfilt/coordinator"
	"github.com/capfilt/capfilt/internal/testutil"
	"github.com/capfilt/capfilt/pipeline"
	"github.com/capfilt/capfilt/shards"
	"github.com/capfilt/capfilt/synth"
	"github.com/capfilt/capfilt/workers"
)

// Inputs and outputs on S3 (the in-process server, through the AWS SDK).
func TestTwentyShardsThreeWorkersAccountForEverySample(t *testing.T) {
	w := newWorld(t)
	s3 := testutil.StartS3(t, "web", "clean")
	w.store = shards.OpenStore(shards.StoreConfig{S3Endpoint: s3.Endpoint, S3Region: s3.Region, S3PathStyle: true,
		S3Credentials: s3.Credentials()})
	w.coord = coordinator.New(w.q, coordinator.Config{Store: w.store, Version: "test"})
	for i := range 20 {
		var buf bytes.Buffer
		if err := synth.WriteSampleShard(&buf, i, synth.SampleOptions{PerShard: 6, Width: 48, Height: 40, MismatchRate: 0.3,
			CorruptRate: 0.1, Seed: 3}); err != nil {
			t.Fatal(err)
		}
		s3.Put(t, "web", fmt.Sprintf("laion/%05d.tar", i), buf.Bytes())
	}
	rs := w.settings(t, "twenty", "s3://web/laion/{00000..00019}.tar")
	rs.Output = mustURL(t, "s3://clean/run1/")
	w.out = rs.Output.String()
	sum := w.submit(t, rs)
	if len(sum.Shards) != 20 || sum.Published != 20 || sum.Known != 0 {
		t.Fatalf("submit: %d shards, %d published, %d known", len(sum.Shards), sum.Published, sum.Known)
	}
	w.startWorkers(t, 3, w.src)
	st := w.waitComplete(t, "twenty", 90*time.Second)
	if len(st.Problems) != 0 {
		t.Fatalf("problems: %+v", st.Problems)
	}
	m := w.checkOutputs(t, "twenty", rs.Output, 20)
	if tot := m.Totals; tot.Accepted == 0 || tot.Rejected == 0 || tot.Skipped == 0 {
		t.Fatalf("totals %+v: want accepted, rejected and skipped images all present", tot)
	}
	objects, err := w.store.List(context.Background(), rs.Output)
	if err != nil {
		t.Fatal(err)
	}
	var parquet, stats int
	for _, o := range objects {
		switch name := o.URL.Base(); {
		case strings.HasSuffix(name, ".stats.json"):
			stats++
		case strings.HasSuffix(name, ".parquet"):
			parquet++
		case name != coordinator.ManifestName && name != coordinator.ClaimName:
			t.Errorf("unexpected object %s", o.URL)
		}
	}
	if parquet != 20 || stats != 20 {
		t.Fatalf("%d parquet and %d stats objects, want 20 of each", parquet, stats)
	}
}

// Captions are drawn from (seed, image key): a shard processed again, in batches of
// another size, gets the same captions and scores.
func TestRetriedShardWritesTheSameRows(t *testing.T) {
	w := newWorld(t)
	w.shards(t, 1, 10)
	w.submit(t, w.settings(t, "again"))
	stop := w.startWorkers(t, 1, w.src) // batches of 4
	w.waitComplete(t, "again", 30*time.Second)
	stop()
	out, _ := shards.ParseURL(w.out)
	first := readRows(t, w.store, out.Join("00000.parquet"))

	if _, err := w.coord.Retry(context.Background(), coordinator.RetryRequest{Run: "again", Shards: []string{"00000"}}); err != nil {
		t.Fatal(err)
	}
	wk, err := workers.New(w.q, workers.Config{ID: "odd", Models: w.src, Store: w.store, BatchSize: 3, FetchWait: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go wk.Run(ctx)
	waitFor(t, 30*time.Second, "the retried shard", func() bool {
		st, _, err := w.q.ShardState(context.Background(), "again", "00000")
		return err == nil && st.State == pipeline.Done && st.Retry == 1
	})
	second := readRows(t, w.store, out.Join("00000.parquet"))
	if len(first) == 0 || len(first) != len(second) {
		t.Fatalf("%d rows, then %d", len(first), len(second))
	}
	for i := range first {
		a, b := first[i], second[i]
		if a.Key != b.Key || len(a.Captions)+len(a.Rejected) != len(b.Captions)+len(b.Rejected) {
			t.Fatalf("row %d: %+v then %+v", i, a, b)
		}
		for k, c := range append(a.Captions, a.Rejected...) {
			d := append(b.Captions, b.Rejected...)[k]
			if c.Text != d.Text || c.Source != d.Source || abs32(c.ITM-d.ITM) > 1e-5 || abs32(c.ITC-d.ITC) > 1e-5 {
				t.Fatalf("row %s caption %d: %+v then %+v", a.Key, k, c, d)
			}
		}
	}
}

func readRows(t *testing.T, store shards.Store, u shards.URL) []shards.CleanedRow {
	t.Helper()
	r, err := store.OpenAt(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cr, err := shards.OpenCleaned(r, u.String(), shards.CleanedReadOptions{SkipImages: true})
	if err != nil {
		t.Fatal(err)
	}
	defer cr.Close()
	var rows []shards.CleanedRow
	for {
		row, err := cr.Next()
		if err == io.EOF {
			return rows
		}
		if err != nil {
			t.Fatal(err)
		}
		rows = append(rows, row)
	}
}

func abs32(x float32) float32 {
	if x < 0 {
		return -x
	}
	return x
}
