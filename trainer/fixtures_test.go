package trainer

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/capfilt/capfilt/imageproc"
	"github.com/capfilt/capfilt/shards"
)

// Fixtures written by the tests: real JPEG and PNG bytes, a real cleaned Parquet, a
// real tar, a COCO JSON with an image folder.

func testImage(w, h, seed int) image.Image {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.RGBA{uint8(x*7 + seed*31), uint8(y*5 + seed*17), uint8((x + y + seed) * 3), 255})
		}
	}
	return img
}

func jpegBytes(t testing.TB, w, h, seed int) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, testImage(w, h, seed), &jpeg.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func pngBytes(t testing.TB, w, h, seed int) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, testImage(w, h, seed)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// corruptJPEG is a JPEG cut off after its header: the format is recognised, the
// pixels are not there.
func corruptJPEG(t testing.TB) []byte {
	return jpegBytes(t, 40, 30, 99)[:200]
}

func cleanedParquet(t testing.TB, rows []shards.CleanedRow) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := shards.NewCleanedWriter(&buf, shards.CleanedMeta{Version: "test", RunID: "r1"}, shards.CleanedOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if r.SourceShard == "" {
			r.SourceShard = "in.tar"
		}
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func caps(pairs ...string) []shards.Caption {
	var out []shards.Caption
	for i := 0; i < len(pairs); i += 2 {
		out = append(out, shards.Caption{Source: pairs[i], Text: pairs[i+1], ITM: 0.9, ITC: 0.4})
	}
	return out
}

type tarSample struct {
	key, ext string
	image    []byte
	caption  *string
}

func strp(s string) *string { return &s }

func tarBytes(t testing.TB, samples []tarSample) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	put := func(name string, data []byte) {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range samples {
		put(s.key+"."+s.ext, s.image)
		if s.caption != nil {
			put(s.key+".txt", []byte(*s.caption))
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func jsonBytes(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// mixedData writes the three kinds of source into dir:
//
//	cleaned/part-0.parquet  c0 (web + synthetic), c1 (synthetic only), c2 (web only)
//	cleaned/part-1.parquet  c3 (web + synthetic)
//	web/shard-0.tar         w0 (jpeg), w1 (png), w2 (no caption: skipped when indexed), w3 (jpeg)
//	coco/ann.json + coco/images: img1 with two captions, img2 with one
//
// 4 + 3 + 3 = 10 samples.
func mixedData(t testing.TB, dir string) []DataSource {
	t.Helper()
	writeFile(t, filepath.Join(dir, "cleaned", "part-0.parquet"), cleanedParquet(t, []shards.CleanedRow{
		{Key: "c0", Image: jpegBytes(t, 64, 48, 0), Width: 64, Height: 48, Captions: caps("web", "A red square.", "synthetic", "a picture of a red square")},
		{Key: "c1", Image: pngBytes(t, 50, 60, 1), Width: 50, Height: 60, Captions: caps("synthetic", "a blue circle")},
		{Key: "c2", Image: jpegBytes(t, 40, 40, 2), Width: 40, Height: 40, Captions: caps("web", "green triangle on white")},
	}))
	writeFile(t, filepath.Join(dir, "cleaned", "part-1.parquet"), cleanedParquet(t, []shards.CleanedRow{
		{Key: "c3", Image: jpegBytes(t, 70, 35, 3), Width: 70, Height: 35, Captions: caps("web", "two shapes", "synthetic", "a yellow star")},
	}))
	writeFile(t, filepath.Join(dir, "web", "shard-0.tar"), tarBytes(t, []tarSample{
		{key: "w0", ext: "jpg", image: jpegBytes(t, 48, 48, 4), caption: strp("IMG_0001.JPG buy now!")},
		{key: "w1", ext: "png", image: pngBytes(t, 30, 45, 5), caption: strp("a cat (maybe)")},
		{key: "w2", ext: "jpg", image: jpegBytes(t, 30, 30, 6)},
		{key: "w3", ext: "jpg", image: jpegBytes(t, 52, 39, 7), caption: strp("sunset over the sea")},
	}))
	writeFile(t, filepath.Join(dir, "coco", "images", "img1.png"), pngBytes(t, 44, 33, 8))
	writeFile(t, filepath.Join(dir, "coco", "images", "img2.jpg"), jpegBytes(t, 36, 48, 9))
	writeFile(t, filepath.Join(dir, "coco", "ann.json"), jsonBytes(t, []map[string]any{
		{"image": "images/img1.png", "caption": "A man riding a horse.", "image_id": "coco_1"},
		{"image": "images/img1.png", "caption": "A person on a horse!", "image_id": "coco_1"},
		{"image": "images/img2.jpg", "caption": []string{"Two dogs."}, "image_id": 2},
	}))
	return []DataSource{
		{Kind: SourceCleaned, Location: filepath.Join(dir, "cleaned", "part-{0..1}.parquet")},
		{Kind: SourceWeb, Location: filepath.Join(dir, "web", "*.tar")},
		{Kind: SourceCOCO, Location: filepath.Join(dir, "coco", "ann.json")},
	}
}

func testLoaderConfig(batch int) LoaderConfig {
	return LoaderConfig{BatchSize: batch, Transform: imageproc.NewTrainTransform(16, imageproc.PretrainMinScale),
		Seed: 7, Workers: 3, Prefetch: 2, ShuffleBuffer: 4}
}

// drain reads every batch of an epoch.
func drain(t testing.TB, it *EpochIterator) []*Batch {
	t.Helper()
	var out []*Batch
	for {
		b, err := it.Next()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatalf("next: %v", err)
			}
			return out
		}
		out = append(out, b)
	}
}

func sampleKey(b *Batch, i int) string {
	return fmt.Sprintf("%d:%s:%s", b.SampleIDs[i], b.Keys[i], b.Texts[i])
}
