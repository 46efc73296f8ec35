package workers_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/capfilt/capfilt/modelstage"
	"github.com/capfilt/capfilt/pipeline"
	"github.com/capfilt/capfilt/pipeline/spec"
	"github.com/capfilt/capfilt/shards"
	"github.com/capfilt/capfilt/synth"
	"github.com/capfilt/capfilt/workers"
)

type member struct {
	name string
	data []byte
}

func writeTar(t *testing.T, path string, members []member) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, m := range members {
		if err := tw.WriteHeader(&tar.Header{Name: m.name, Mode: 0o644, Size: int64(len(m.data)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write(m.data)
	}
	tw.Close()
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func encodedScene(t *testing.T, asPNG bool, colour string) []byte {
	t.Helper()
	img := synth.Render(synth.Scene{Shape: "circle", Colour: colour, Position: "left"}, 40, 30, color.RGBA{100, 100, 100, 255})
	var buf bytes.Buffer
	var err error
	if asPNG {
		err = png.Encode(&buf, img)
	} else {
		err = jpeg.Encode(&buf, img, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestShardKeepsInputOrderAndAccountsForEveryBadSample(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "mixed.tar")
	good := encodedScene(t, false, "red")
	writeTar(t, in, []member{
		{"a.jpg", good}, {"a.txt", []byte("a red circle")},
		{"b.png", encodedScene(t, true, "blue")[:50]}, {"b.txt", []byte("a cut short picture")},
		{"c.jpg", good}, // no caption
		{"d.png", encodedScene(t, true, "green")}, {"d.txt", []byte("a green circle")},
		{"e.jpg", good}, {"e.txt", []byte("   ")},
		{"f.jpg", []byte("not an image at all")}, {"f.txt", []byte("junk")},
		{"g.jpg", good}, {"g.txt", []byte("a red circle again")},
	})
	out := filepath.Join(dir, "out")
	store := shards.OpenStore(shards.StoreConfig{})
	inURL, outURL := mustURL(t, in), mustURL(t, out)
	rs := pipeline.RunSettings{Run: "order", Output: outURL, Rule: spec.DefaultRule(), Captioner: pipeline.ModelSpec{Path: "none"}, Filter: pipeline.ModelSpec{Path: "none"}}
	for _, batch := range []int{1, 2, 16} {
		res, err := workers.ProcessShard(context.Background(), workers.ShardTask{
			Job:      pipeline.Job{Run: "order", Shard: pipeline.ShardRef{ID: "00000", URL: inURL}, Output: outURL},
			Settings: rs, Labeler: modelstage.PassThrough{Side: 16}, Store: store,
			Sizer: workers.NewBatchSizer(batch), DecodeWorkers: 3,
		})
		if err != nil {
			t.Fatalf("batch %d: %v", batch, err)
		}
		want := pipeline.Counts{Read: 7, Accepted: 3, Skipped: 4}
		if res.Counts != want {
			t.Fatalf("batch %d: counts %+v, want %+v", batch, res.Counts, want)
		}
		skipped := res.Detail.Skipped
		if skipped[shards.SkipCorruptImage] != 2 || skipped[shards.SkipMissingCaption] != 1 || skipped[shards.SkipEmptyCaption] != 1 {
			t.Fatalf("batch %d: skipped %v", batch, skipped)
		}
		f, err := store.OpenAt(context.Background(), res.Output)
		if err != nil {
			t.Fatal(err)
		}
		cr, err := shards.OpenCleaned(f, res.Output.String(), shards.CleanedReadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		for {
			row, err := cr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			keys = append(keys, row.Key)
			if row.Width != 40 || row.Height != 30 || len(row.Image) == 0 || row.SourceShard != in {
				t.Fatalf("row %s: %dx%d, %d image bytes, shard %q", row.Key, row.Width, row.Height, len(row.Image), row.SourceShard)
			}
		}
		cr.Close()
		f.Close()
		if len(keys) != 3 || keys[0] != "a" || keys[1] != "d" || keys[2] != "g" {
			t.Fatalf("batch %d: rows %v, want a d g in input order", batch, keys)
		}
	}
}

func TestFailedShardPublishesNothing(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "failing.tar")
	good := encodedScene(t, false, "red")
	writeTar(t, in, []member{{"a.jpg", good}, {"a.txt", []byte("a red circle")}, {"b.jpg", good}, {"b.txt", []byte("again")}})
	out := filepath.Join(dir, "out")
	store := shards.OpenStore(shards.StoreConfig{})
	_, err := workers.ProcessShard(context.Background(), workers.ShardTask{
		Job:      pipeline.Job{Run: "r", Shard: pipeline.ShardRef{ID: "00000", URL: mustURL(t, in)}, Output: mustURL(t, out)},
		Settings: pipeline.RunSettings{Run: "r", Rule: spec.DefaultRule()}, Labeler: &failingLabeler{PassThrough: modelstage.PassThrough{Side: 8}, after: 1},
		Store: store, Sizer: workers.NewBatchSizer(1),
	})
	entries, _ := os.ReadDir(out)
	if err == nil {
		t.Fatalf("a shard whose model stage failed processed without error; outputs %v", entries)
	}
	if len(entries) != 0 {
		t.Fatalf("a failed shard left %v", entries)
	}
}

// failingLabeler fails every batch after the first `after`.
type failingLabeler struct {
	modelstage.PassThrough
	after int
	n     int
}

func (l *failingLabeler) Label(ctx context.Context, b workers.Batch) ([]workers.Labels, error) {
	if l.n++; l.n > l.after {
		return nil, errors.New("the model stage failed")
	}
	return l.PassThrough.Label(ctx, b)
}

func mustURL(t *testing.T, s string) shards.URL {
	t.Helper()
	u, err := shards.ParseURL(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
