package workers_test

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/capfilt/capfilt/pipeline"
	"github.com/capfilt/capfilt/pipeline/spec"
	"github.com/capfilt/capfilt/shards"
)

// truncatedTar is a WebDataset tar of n samples cut inside the image of sample `at`
// (0-based): what a download that broke off leaves.
func truncatedTar(t *testing.T, n, at int) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	cut := 0
	for i := range n {
		key := fmt.Sprintf("s%02d", i)
		if i == at {
			tw.Flush()
			cut = buf.Len() + 512 + 100 // the image's header and the start of its bytes
		}
		for _, m := range []member{{key + ".jpg", encodedScene(t, false, "red")}, {key + ".txt", []byte("a red circle")}} {
			if err := tw.WriteHeader(&tar.Header{Name: m.name, Mode: 0o644, Size: int64(len(m.data)), Typeflag: tar.TypeReg}); err != nil {
				t.Fatal(err)
			}
			tw.Write(m.data)
		}
	}
	tw.Close()
	return buf.Bytes()[:cut]
}

// A tar cut after 4 samples keeps them: the shard is done with damage, its 4 rows are
// written and counted, and its state, stats and the manifest say where and why it broke.
func TestTruncatedShardIsDoneWithTheSamplesBeforeTheDamage(t *testing.T) {
	w := newWorld(t)
	w.shards(t, 1, 4)
	if err := os.WriteFile(filepath.Join(w.in, "00001.tar"), truncatedTar(t, 6, 4), 0o644); err != nil {
		t.Fatal(err)
	}
	rs := w.settings(t, "damaged")
	rs.Rule.Web, rs.Rule.Synthetic = spec.ITMOnly(0), spec.ITMOnly(0) // keep every image
	w.submit(t, rs)
	w.startWorkers(t, 1, w.src)
	st := w.waitComplete(t, "damaged", 60*time.Second)
	if st.ByState[pipeline.Done] != 2 || st.Damaged != 1 {
		t.Fatalf("states %v, %d damaged; problems %+v", st.ByState, st.Damaged, st.Problems)
	}
	ctx := context.Background()
	cur, _, err := w.q.ShardState(ctx, "damaged", "00001")
	if err != nil {
		t.Fatal(err)
	}
	d := cur.Damage
	if cur.State != pipeline.Done || d == nil || d.Reason != shards.DamageTruncated || d.Member != "s04.jpg" || d.After != "s03.txt" || d.TruncatedAt == 0 {
		t.Fatalf("state %s, damage %+v; want done, truncated in s04.jpg after s03.txt", cur.State, d)
	}
	if want := (pipeline.Counts{Read: 5, Accepted: 4, Skipped: 1}); cur.Counts != want || cur.Attempts != 1 {
		t.Fatalf("counts %+v after %d attempts, want %+v after 1: the 4 whole samples and the cut one", cur.Counts, cur.Attempts, want)
	}
	stats, err := shards.ReadStats(ctx, w.store, mustURL(t, cur.Stats))
	if err != nil {
		t.Fatal(err)
	}
	if stats.Damage == nil || *stats.Damage != *d || stats.Skipped[shards.SkipTruncatedMember] != 1 {
		t.Fatalf("stats damage %+v, skipped %v", stats.Damage, stats.Skipped)
	}
	out := mustURL(t, w.out)
	m := w.checkOutputs(t, "damaged", out, 2) // the 4 rows are in the Parquet: checkOutputs counts them
	if m.Damaged != 1 || m.Shards[1].Damage == nil || *m.Shards[1].Damage != *d || m.Shards[0].Damage != nil {
		t.Fatalf("manifest: %d damaged, shard lines %+v", m.Damaged, m.Shards)
	}
}
