package coordinator_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/capfilt/capfilt/coordinator"
	"github.com/capfilt/capfilt/internal/testutil/pipelinetest"
	"github.com/capfilt/capfilt/pipeline"
	"github.com/capfilt/capfilt/pipeline/spec"
	"github.com/capfilt/capfilt/shards"
)

func setup(t *testing.T) (*pipeline.Queue, *coordinator.Coordinator) {
	t.Helper()
	n := pipelinetest.StartNATS(t)
	q := n.EnsureQueue(t)
	return q, coordinator.New(q, coordinator.Config{Store: shards.OpenStore(shards.StoreConfig{}), Version: "test"})
}

// runSettings are a run's settings as the coordinator sees them: it records the model
// and generation settings without reading them.
func runSettings(t *testing.T, run string, inputs []string, output, model string) pipeline.RunSettings {
	t.Helper()
	out, err := coordinator.OutputURL(output)
	if err != nil {
		t.Fatal(err)
	}
	gen := spec.NucleusDefaults()
	gen.Seed = 7
	return pipeline.RunSettings{Run: run, Inputs: inputs, Output: out, Captioner: pipeline.ModelSpec{Path: model},
		Filter: pipeline.ModelSpec{Path: model}, Generation: gen, Rule: spec.DefaultRule(), Queue: pipelinetest.FastRetries()}
}

// fetch pulls up to n jobs for the test, as a worker would.
func fetch(t *testing.T, q *pipeline.Queue, n int) []*pipeline.Delivery {
	t.Helper()
	var out []*pipeline.Delivery
	for range n {
		d, err := q.Fetch(context.Background(), 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if d == nil {
			break
		}
		out = append(out, d)
	}
	return out
}

// touch writes a one-sample WebDataset tar at each path: submit reads a shard's first
// sample, not its images.
func touch(t *testing.T, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, tarOf(t, map[string]string{"k0.jpg": "not decoded at submit", "k0.txt": "a caption"}), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func tarOf(t *testing.T, members map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	names := make([]string, 0, len(members))
	for n := range members {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(members[n])), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(members[n]))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestPlanRefusesInputsThatCannotMakeARun(t *testing.T) {
	_, c := setup(t)
	dir := t.TempDir()
	touch(t, filepath.Join(dir, "a", "00000.tar"), filepath.Join(dir, "a", "00001.tar"), filepath.Join(dir, "b", "00001.tar"),
		filepath.Join(dir, "a", "notes.txt"))
	for _, tc := range []struct {
		name   string
		inputs []string
		want   string // in the error
	}{
		{"a shard of a range is missing", []string{filepath.Join(dir, "a", "{00000..00002}.tar")}, "00002.tar"},
		{"two shards write the same output", []string{filepath.Join(dir, "a", "*.tar"), filepath.Join(dir, "b", "*.tar")}, "00001.parquet"},
		{"not a shard format", []string{filepath.Join(dir, "a", "notes.txt")}, "notes.txt"},
		{"a glob that matches nothing", []string{filepath.Join(dir, "c", "*.tar")}, "c/*.tar"},
		{"no input at all", nil, "no input"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.Plan(context.Background(), tc.inputs)
			var inv *coordinator.InvalidError
			if !errors.As(err, &inv) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v; want an InvalidError naming %q", err, tc.want)
			}
		})
	}
	refs, err := c.Plan(context.Background(), []string{filepath.Join(dir, "a", "{00000..00001}.tar")})
	if err != nil || len(refs) != 2 || refs[1].ID != "00001" || refs[1].URL.String() != filepath.Join(dir, "a", "00001.tar") {
		t.Fatalf("plan: %v %+v", err, refs)
	}
}

func TestSubmitRecordsTheRunAndOneJobPerShard(t *testing.T) {
	q, c := setup(t)
	in, out := t.TempDir(), t.TempDir()
	touch(t, filepath.Join(in, "00000.tar"), filepath.Join(in, "00001.tar"), filepath.Join(in, "00002.tar"))
	rs := runSettings(t, "r1", []string{filepath.Join(in, "*.tar")}, out, "/models/blip")
	sum, err := c.Submit(context.Background(), rs)
	if err != nil || sum.Published != 3 || len(sum.Shards) != 3 {
		t.Fatalf("submit: %v %+v", err, sum)
	}
	stored, err := q.RunSettings(context.Background(), "r1")
	if err != nil || stored.Shards != 3 || stored.Differences(rs) != "shards" {
		t.Fatalf("stored settings %+v (%v): differences from the request %q, want only the shard count", stored, err, stored.Differences(rs))
	}
	states, err := q.RunShardStates(context.Background(), "r1")
	if err != nil || len(states) != 3 || states["00001"].State != pipeline.Pending {
		t.Fatalf("states %v %+v", err, states)
	}
	seen := map[string]bool{}
	for _, d := range fetch(t, q, 3) {
		job, err := pipeline.DecodeJob(d.Data())
		if err != nil {
			t.Fatal(err)
		}
		if d.Subject() != "capfilt.jobs.r1" || job.MsgID() != "r1/"+job.Shard.ID || job.Output.String() != out {
			t.Fatalf("job %+v on %s", job, d.Subject())
		}
		seen[job.Shard.ID] = true
		d.Ack(context.Background())
	}
	if len(seen) != 3 {
		t.Fatalf("jobs for %v", seen)
	}
	if entries, _ := os.ReadDir(out); len(entries) != 1 || entries[0].Name() != coordinator.ClaimName {
		t.Fatalf("the output holds %v; want only the run's claim (the write check cleans up after itself)", entries)
	}
}

func TestSubmitRefusesAnUnwritableOutput(t *testing.T) {
	q, c := setup(t)
	in := t.TempDir()
	touch(t, filepath.Join(in, "00000.tar"))
	blocker := filepath.Join(t.TempDir(), "a-file")
	touch(t, blocker)
	rs := runSettings(t, "r2", []string{filepath.Join(in, "00000.tar")}, filepath.Join(blocker, "out"), "/m")
	_, err := c.Submit(context.Background(), rs)
	var inv *coordinator.InvalidError
	if !errors.As(err, &inv) || !strings.Contains(err.Error(), "not writable") {
		t.Fatalf("err %v", err)
	}
	if n, _ := q.PendingJobs(context.Background(), "r2"); n != 0 {
		t.Fatalf("%d jobs published for a run that cannot write", n)
	}
	if _, err := q.RunSettings(context.Background(), "r2"); !errors.Is(err, pipeline.ErrNotFound) {
		t.Fatalf("settings recorded for a refused run: %v", err)
	}
}

func TestRetryTakesOnlyShardsWithoutAJob(t *testing.T) {
	q, c := setup(t)
	in, out := t.TempDir(), t.TempDir()
	touch(t, filepath.Join(in, "00000.tar"), filepath.Join(in, "00001.tar"))
	if _, err := c.Submit(context.Background(), runSettings(t, "r3", []string{filepath.Join(in, "*.tar")}, out, "/m")); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_, err := c.Retry(ctx, coordinator.RetryRequest{Run: "r3", Shards: []string{"00000"}})
	if err == nil || !strings.Contains(err.Error(), "pending") {
		t.Fatalf("retry of a pending shard: %v", err)
	}
	if _, err := c.Retry(ctx, coordinator.RetryRequest{Run: "r3", Shards: []string{"nope"}}); err == nil {
		t.Fatal("retry of an unknown shard succeeded")
	}
	if _, err := c.Retry(ctx, coordinator.RetryRequest{Run: "nope", Dead: true}); err == nil || !strings.Contains(err.Error(), "no run") {
		t.Fatalf("retry of an unknown run: %v", err)
	}

	// A worker gave up on shard 1: its job left the stream and it is dead.
	for _, d := range fetch(t, q, 2) {
		job, _ := pipeline.DecodeJob(d.Data())
		if job.Shard.ID == "00001" {
			d.Term(ctx, "test")
			st, _, _ := q.ShardState(ctx, "r3", "00001")
			st.State, st.Attempts, st.LastError = pipeline.Dead, 5, "attempt 5: bad tar"
			q.PutShardState(ctx, st)
		} else {
			d.Nak()
		}
	}
	for _, name := range []string{"00001", filepath.Join(in, "00001.tar")} { // by id, then by input URL
		refs, err := c.Retry(ctx, coordinator.RetryRequest{Run: "r3", Shards: []string{name}})
		if name == "00001" && (err != nil || len(refs) != 1) {
			t.Fatalf("retry by id: %v %+v", err, refs)
		}
		if name != "00001" && (err == nil || !strings.Contains(err.Error(), "pending")) {
			t.Fatalf("a second retry while the first is queued: %v", err)
		}
	}
	st, _, _ := q.ShardState(ctx, "r3", "00001")
	if st.State != pipeline.Pending || st.Retry != 1 || st.LastError != "attempt 5: bad tar" {
		t.Fatalf("retried state %+v", st)
	}
	if n, _ := q.PendingJobs(ctx, "r3"); n != 2 {
		t.Fatalf("%d jobs in the stream, want the nak'd one and the retry", n)
	}
}

func TestSummarizeCountsStatesThroughputAndETA(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	ref := func(i int) pipeline.ShardRef { return pipeline.ShardRef{Index: i, ID: pipeline.ShardID(i, 5)} }
	counts := pipeline.Counts{Read: 100, Accepted: 60, Rejected: 30, Skipped: 10}
	states := map[string]pipeline.ShardState{
		"00000": {Shard: ref(0), State: pipeline.Done, Counts: counts, StartedAt: t0, FinishedAt: t0.Add(10 * time.Second)},
		"00001": {Shard: ref(1), State: pipeline.Done, Counts: counts, StartedAt: t0.Add(10 * time.Second), FinishedAt: t0.Add(20 * time.Second)},
		"00002": {Shard: ref(2), State: pipeline.Running, Worker: "w1", Progress: 50, BatchSize: 8, StartedAt: t0.Add(20 * time.Second)},
		"00003": {Shard: ref(3), State: pipeline.Dead, Attempts: 5, LastError: "bad tar"},
	}
	rs := pipeline.RunSettings{Run: "r", Shards: 5}
	s := coordinator.Summarize(rs, states, t0.Add(25*time.Second))

	if s.ByState[pipeline.Done] != 2 || s.ByState[pipeline.Running] != 1 || s.ByState[pipeline.Dead] != 1 || s.ByState[pipeline.Pending] != 1 {
		t.Fatalf("by state %v (the shard with no state yet is pending)", s.ByState)
	}
	if s.Images != (pipeline.Counts{Read: 200, Accepted: 120, Rejected: 60, Skipped: 20}) || s.InFlight != 50 {
		t.Fatalf("images %+v, in flight %d", s.Images, s.InFlight)
	}
	if s.ImagesPerSecond != 10 { // 250 samples in 25 s
		t.Fatalf("images/s %v", s.ImagesPerSecond)
	}
	if s.ETA != 15*time.Second { // 2 shards of ~100 left, 50 of them read: 150 at 10/s
		t.Fatalf("ETA %v", s.ETA)
	}
	if s.Complete || len(s.Problems) != 1 || s.Problems[0].LastError != "bad tar" || len(s.Workers) != 1 || s.Workers[0].BatchSize != 8 {
		t.Fatalf("complete %v, problems %+v, workers %+v", s.Complete, s.Problems, s.Workers)
	}

	delete(states, "00002")
	states["00002"] = pipeline.ShardState{Shard: ref(2), State: pipeline.Done, Counts: counts, StartedAt: t0, FinishedAt: t0}
	states["00004"] = pipeline.ShardState{Shard: ref(4), State: pipeline.Dead}
	if s := coordinator.Summarize(rs, states, t0.Add(time.Hour)); !s.Complete || s.ETA != 0 {
		t.Fatalf("every shard done or dead: complete %v, ETA %v", s.Complete, s.ETA)
	}
	m := coordinator.BuildManifest(rs, states, "v")
	if !m.Complete || m.Done != 3 || m.Dead != 2 || m.Totals.Read != 300 || len(m.Shards) != 5 ||
		m.Shards[3].Error != "bad tar" || m.Shards[3].State != pipeline.Dead || m.Shards[0].ID != "00000" {
		t.Fatalf("manifest %+v", m)
	}
}
