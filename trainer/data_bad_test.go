package trainer

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/capfilt/capfilt/shards"
)

// Bad samples are skipped with their reason; when they leave the share short of its
// batches, the order is read again and the batches are still full.
func TestBadSamplesAreSkippedCountedAndBatchesStayFull(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "w.tar"), tarBytes(t, []tarSample{
		{key: "a", ext: "jpg", image: jpegBytes(t, 30, 30, 1), caption: strp("a dog")},
		{key: "b", ext: "jpg", image: corruptJPEG(t), caption: strp("corrupt")},
		{key: "c", ext: "jpg", image: jpegBytes(t, 30, 30, 2), caption: strp("... !!! ***")},
		{key: "d", ext: "jpg", image: []byte("not an image at all"), caption: strp("junk")},
	}))
	writeFile(t, filepath.Join(dir, "coco", "ann.json"), jsonBytes(t, []map[string]any{
		{"image": "gone.jpg", "caption": "missing file"},
		{"image": "here.png", "caption": "a cat"},
	}))
	writeFile(t, filepath.Join(dir, "coco", "here.png"), pngBytes(t, 20, 25, 3))
	d, err := OpenDataset(context.Background(), shards.OpenStore(shards.StoreConfig{}), []DataSource{
		{Kind: SourceWeb, Location: filepath.Join(dir, "w.tar")},
		{Kind: SourceCOCO, Location: filepath.Join(dir, "coco", "ann.json")},
	}, DatasetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := testLoaderConfig(2)
	it, err := d.Epoch(context.Background(), 0, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	batches := drain(t, it)
	// 6 samples, 2 good: 3 batches of 2 need three passes.
	if len(batches) != 3 {
		t.Fatalf("%d batches, want 3", len(batches))
	}
	for _, b := range batches {
		for _, text := range b.Texts {
			if text != "a dog" && text != "a cat" {
				t.Errorf("a bad sample reached a batch: %q", text)
			}
		}
	}
	// Two whole passes and part of a third: each pass skips 2 corrupt images, 1 empty
	// caption and 1 missing file; the third stops at the last good sample it needs.
	st := it.Stats()
	var skipped int64
	for _, n := range st.Skipped {
		skipped += n
	}
	if st.Passes != 3 || st.Samples != 6 || st.Consumed != st.Samples+skipped || st.Consumed < 14 || st.Consumed > 18 {
		t.Errorf("stats %+v", st)
	}
	for reason, perPass := range map[string]int64{SkipCorruptImage: 2, SkipEmptyCaption: 1, SkipMissingImage: 1} {
		if n := st.Skipped[reason]; n < 2*perPass || n > 3*perPass {
			t.Errorf("%s skipped %d times, want %d to %d", reason, n, 2*perPass, 3*perPass)
		}
	}
}

func TestEpochFailsWhenNoSampleIsUsable(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "w.tar"), tarBytes(t, []tarSample{
		{key: "b", ext: "jpg", image: corruptJPEG(t), caption: strp("corrupt")},
	}))
	d, err := OpenDataset(context.Background(), shards.OpenStore(shards.StoreConfig{}),
		[]DataSource{{Kind: SourceWeb, Location: filepath.Join(dir, "w.tar")}}, DatasetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	it, err := d.Epoch(context.Background(), 0, testLoaderConfig(1), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := it.Next(); err == nil || !strings.Contains(err.Error(), "no usable sample") {
		t.Fatalf("next: %v", err)
	}
}
