package trainer

import (
	"bytes"
	"context"
	"errors"
	"io"
	"maps"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/capfilt/capfilt/blip/tokenizer"
	"github.com/capfilt/capfilt/imageproc"
	"github.com/capfilt/capfilt/shards"
)

func openMixed(t *testing.T, opts DatasetOptions) (*Dataset, string) {
	t.Helper()
	dir := t.TempDir()
	d, err := OpenDataset(context.Background(), shards.OpenStore(shards.StoreConfig{}), mixedData(t, dir), opts)
	if err != nil {
		t.Fatal(err)
	}
	return d, dir
}

func TestParseDataSource(t *testing.T) {
	cases := map[string]DataSource{
		"cleaned:s3://b/run/*.parquet":  {Kind: SourceCleaned, Location: "s3://b/run/*.parquet"},
		"web:shards/{000..009}.tar":     {Kind: SourceWeb, Location: "shards/{000..009}.tar"},
		"coco:ann.json":                 {Kind: SourceCOCO, Location: "ann.json"},
		"coco:a@b/ann.json@s3://b/imgs": {Kind: SourceCOCO, Location: "a@b/ann.json", ImageRoot: "s3://b/imgs"},
	}
	for spec, want := range cases {
		got, err := ParseDataSource(spec)
		if err != nil || got != want {
			t.Errorf("%q: %+v, %v", spec, got, err)
		}
		if got.String() != spec {
			t.Errorf("%q prints as %q", spec, got.String())
		}
	}
	for _, bad := range []string{"s3://b/x.parquet", "laion:x", "cleaned:", "coco:ann.json@"} {
		if _, err := ParseDataSource(bad); err == nil {
			t.Errorf("%q was accepted", bad)
		}
	}
}

func TestOpenDatasetCountsEverySourceWithoutDecoding(t *testing.T) {
	d, _ := openMixed(t, DatasetOptions{})
	if d.Len() != 10 || d.Files() != 4 {
		t.Fatalf("%d samples in %d files, want 10 in 4", d.Len(), d.Files())
	}
	if want := map[string]int64{shards.SkipMissingCaption: 1}; !maps.Equal(d.Skipped(), want) {
		t.Errorf("skipped while indexing %v, want %v", d.Skipped(), want)
	}
	// Sources of 4, 3 and 3 samples over 2 ranks: shares 2+1+1 and 2+2+2.
	for _, c := range [][3]int{{1, 3, 3}, {3, 1, 3}, {2, 1, 4}, {2, 2, 2}, {2, 5, 0}} {
		if got := d.StepsPerEpoch(c[0], c[1]); got != c[2] {
			t.Errorf("world %d batch %d: %d steps per epoch, want %d", c[0], c[1], got, c[2])
		}
	}
	synth, _ := openMixed(t, DatasetOptions{Captions: CaptionsSynthetic})
	// c2 has no synthetic caption: 3 cleaned samples remain.
	if synth.Len() != 9 || synth.Skipped()[SkipNoSelectedCaption] != 1 {
		t.Errorf("synthetic only: %d samples, skipped %v", synth.Len(), synth.Skipped())
	}
	if synth.Fingerprint() == d.Fingerprint() {
		t.Error("the caption selector does not change the fingerprint")
	}
}

// With world ranks, every rank gets StepsPerEpoch full batches, no sample reaches two
// ranks, and together they see every sample but the dropped remainder.
func TestEpochSplitsSamplesAcrossRanksWithoutOverlap(t *testing.T) {
	d, _ := openMixed(t, DatasetOptions{})
	for _, world := range []int{1, 2, 3} {
		for epoch := range 3 {
			seen := map[int64]int{}
			perSource := map[string][]int{}
			for rank := range world {
				cfg := testLoaderConfig(1)
				cfg.Rank, cfg.World = rank, world
				it, err := d.Epoch(context.Background(), epoch, cfg, nil)
				if err != nil {
					t.Fatal(err)
				}
				batches := drain(t, it)
				if len(batches) != d.StepsPerEpoch(world, 1) {
					t.Fatalf("world %d rank %d: %d batches, want %d", world, rank, len(batches), d.StepsPerEpoch(world, 1))
				}
				for _, b := range batches {
					for _, id := range b.SampleIDs {
						seen[id]++
					}
				}
				// Unbatched, a rank's share holds every source in proportion.
				it, err = d.Epoch(context.Background(), epoch, cfg, nil)
				if err != nil {
					t.Fatal(err)
				}
				counts := map[string]int{}
				for _, sp := range it.spans {
					for _, x := range sp {
						counts[string(d.units[x.unit].kind)] += int(x.to - x.from)
					}
				}
				it.Close()
				for k, n := range counts {
					perSource[k] = append(perSource[k], n)
				}
			}
			for kind, ns := range perSource {
				total := map[string]int{"cleaned": 4, "web": 3, "coco": 3}[kind]
				sum := 0
				for _, n := range ns {
					sum += n
					if n < total/world || n > (total+world-1)/world {
						t.Errorf("world %d: a rank holds %d of the %d %s samples", world, n, total, kind)
					}
				}
				if sum != total {
					t.Errorf("world %d: the ranks hold %d of the %d %s samples", world, sum, total, kind)
				}
			}
			if len(seen) != world*d.StepsPerEpoch(world, 1) {
				t.Errorf("world %d epoch %d: %d distinct samples, want %d", world, epoch, len(seen), world*d.StepsPerEpoch(world, 1))
			}
			for id, n := range seen {
				if n != 1 || id < 0 || id >= d.Len() {
					t.Errorf("world %d epoch %d: sample %d seen %d times", world, epoch, id, n)
				}
			}
		}
	}
}

func TestBatchesCarryNormalisedPixelsCleanTextsAndIDs(t *testing.T) {
	d, _ := openMixed(t, DatasetOptions{})
	it, err := d.Epoch(context.Background(), 0, testLoaderConfig(5), nil)
	if err != nil {
		t.Fatal(err)
	}
	bySource := map[string]int{}
	cocoImage := map[string]int64{}
	for _, b := range drain(t, it) {
		if b.Len() != 5 || len(b.Pixels) != 5*3*16*16 || b.ImageSize != 16 {
			t.Fatalf("batch of %d with %d pixel values", b.Len(), len(b.Pixels))
		}
		for i, text := range b.Texts {
			if text != tokenizer.PreCaption(text, 30) || text == "" {
				t.Errorf("text %q is not pre_caption'd", text)
			}
			bySource[b.Sources[i]]++
			if b.Sources[i] == CaptionHuman {
				cocoImage[b.Keys[i]+"/"+text] = b.ImageIDs[i]
			}
		}
		lo := (0 - imageproc.CLIPMean[0]) / imageproc.CLIPStd[0]
		hi := (1 - imageproc.CLIPMean[2]) / imageproc.CLIPStd[2]
		for _, v := range b.Pixels {
			if v < lo-1e-6 || v > hi+1e-6 {
				t.Fatalf("pixel %v outside the normalised range [%v, %v]", v, lo, hi)
			}
		}
	}
	if bySource[CaptionWeb] < 3 || bySource[CaptionHuman] != 3 {
		t.Errorf("captions by source %v", bySource)
	}
	// The two captions of coco_1 are two samples of one image.
	a, b := cocoImage["coco_1/a man riding a horse"], cocoImage["coco_1/a person on a horse"]
	if a != b || a == cocoImage["2/two dogs"] {
		t.Errorf("image ids %v", cocoImage)
	}
}

type epochRecord struct {
	keys   []string
	pixels [][]float32
}

func record(batches []*Batch) epochRecord {
	var r epochRecord
	for _, b := range batches {
		for i := range b.Len() {
			r.keys = append(r.keys, sampleKey(b, i))
		}
		r.pixels = append(r.pixels, b.Pixels)
	}
	return r
}

// A second run of the same (seed, epoch) gives the same batches, pixel for pixel;
// resuming from the position of any batch gives exactly the batches that followed it,
// and decodes only their images.
func TestEpochIsDeterministicAndResumesAtAnyStep(t *testing.T) {
	dir := t.TempDir()
	sources := mixedData(t, dir)
	// A corrupt image among them: a bad sample to skip, and to replay on resume.
	writeFile(t, filepath.Join(dir, "web", "shard-1.tar"), tarBytes(t, []tarSample{
		{key: "bad", ext: "jpg", image: corruptJPEG(t), caption: strp("broken")},
		{key: "ok", ext: "png", image: pngBytes(t, 20, 20, 11), caption: strp("fine")},
	}))
	d, err := OpenDataset(context.Background(), shards.OpenStore(shards.StoreConfig{}), sources, DatasetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := testLoaderConfig(2)
	var first int64
	run := func(epoch int, from *DataPosition) ([]*Batch, EpochStats) {
		it, err := d.Epoch(context.Background(), epoch, cfg, from)
		if err != nil {
			t.Fatal(err)
		}
		b := drain(t, it)
		first = it.firstDecoded
		return b, it.Stats()
	}
	full, stats := run(1, nil)
	if len(full) != 6 || stats.Skipped[SkipCorruptImage] != 1 || stats.Consumed != 13 || stats.Samples != 12 {
		t.Fatalf("%d batches, stats %+v", len(full), stats)
	}
	again, _ := run(1, nil)
	if !reflect.DeepEqual(record(full), record(again)) {
		t.Fatal("the same seed and epoch gave different batches")
	}
	other, _ := run(2, nil)
	if reflect.DeepEqual(record(full).keys, record(other).keys) {
		t.Error("epochs 1 and 2 have the same order")
	}
	for k := range full {
		pos := full[k].Position
		if pos.Step != k+1 {
			t.Fatalf("batch %d has position step %d", k, pos.Step)
		}
		rest, st := run(1, &pos)
		if !reflect.DeepEqual(record(rest), record(full[k+1:])) {
			t.Fatalf("resumed after batch %d: different batches", k)
		}
		if k < len(full)-1 && first < pos.Consumed {
			t.Errorf("resumed after batch %d at order position %d: position %d was decoded", k, pos.Consumed, first)
		}
		if st.Skipped[SkipCorruptImage] != 1 && k < len(full)-1 {
			t.Errorf("resumed after batch %d: skip counts %v lost", k, st.Skipped)
		}
	}
}

func TestResumeRefusesAPositionFromOtherSettings(t *testing.T) {
	d, _ := openMixed(t, DatasetOptions{})
	cfg := testLoaderConfig(2)
	it, err := d.Epoch(context.Background(), 0, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := it.Next()
	if err != nil {
		t.Fatal(err)
	}
	it.Close()
	pos := b.Position
	for name, change := range map[string]func(*LoaderConfig){
		"seed":  func(c *LoaderConfig) { c.Seed++ },
		"batch": func(c *LoaderConfig) { c.BatchSize = 3 },
		"world": func(c *LoaderConfig) { c.World = 2 },
		"size":  func(c *LoaderConfig) { c.Transform.Size = 24 },
	} {
		c := cfg
		change(&c)
		if _, err := d.Epoch(context.Background(), 0, c, &pos); err == nil || !strings.Contains(err.Error(), "does not match") {
			t.Errorf("%s changed: %v", name, err)
		}
	}
	if _, err := d.Epoch(context.Background(), 1, cfg, &pos); err == nil {
		t.Error("a position of epoch 0 resumed epoch 1")
	}
}

// A row's caption is drawn per epoch: over epochs both accepted captions of c0 are used.
func TestCleanedRowsDrawOneCaptionPerEpoch(t *testing.T) {
	d, _ := openMixed(t, DatasetOptions{})
	seen := map[string]bool{}
	for epoch := range 12 {
		it, err := d.Epoch(context.Background(), epoch, testLoaderConfig(10), nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range drain(t, it) {
			n := 0
			for i, k := range b.Keys {
				if k == "c0" {
					seen[b.Sources[i]+": "+b.Texts[i]] = true
					n++
				}
			}
			if n != 1 {
				t.Fatalf("epoch %d: c0 appears %d times", epoch, n)
			}
		}
	}
	want := map[string]bool{"web: a red square": true, "synthetic: a picture of a red square": true}
	if !maps.Equal(seen, want) {
		t.Errorf("captions of c0 over 12 epochs: %v", seen)
	}
}

func TestOpenDatasetErrorsNameTheFileAndField(t *testing.T) {
	dir := t.TempDir()
	store := shards.OpenStore(shards.StoreConfig{})
	writeFile(t, filepath.Join(dir, "ann.json"), []byte(`[{"image": "a.jpg", "caption": "x"}, {"image": "b.jpg", "caption": 3}]`))
	_, err := OpenDataset(context.Background(), store, []DataSource{{Kind: SourceCOCO, Location: filepath.Join(dir, "ann.json")}}, DatasetOptions{})
	if err == nil || !strings.Contains(err.Error(), "ann.json: entry 1") || !strings.Contains(err.Error(), `"caption"`) {
		t.Errorf("bad coco entry: %v", err)
	}
	writeFile(t, filepath.Join(dir, "noimg.parquet"), nil)
	_, err = OpenDataset(context.Background(), store, []DataSource{{Kind: SourceCleaned, Location: filepath.Join(dir, "missing-*.parquet")}}, DatasetOptions{})
	if err == nil {
		t.Error("a glob matching nothing was accepted")
	}
	_, err = OpenDataset(context.Background(), store, []DataSource{{Kind: SourceCleaned, Location: filepath.Join(dir, "noimg.parquet")}}, DatasetOptions{})
	if err == nil || !strings.Contains(err.Error(), "noimg.parquet") {
		t.Errorf("an empty file as cleaned Parquet: %v", err)
	}
}

func TestCleanedParquetWithoutImagesIsRefused(t *testing.T) {
	dir := t.TempDir()
	var buf bytes.Buffer
	w, err := shards.NewCleanedWriter(&buf, shards.CleanedMeta{Version: "test"}, shards.CleanedOptions{OmitImages: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(shards.CleanedRow{Key: "k", SourceShard: "s", Captions: caps("web", "a dog")}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "x.parquet"), buf.Bytes())
	_, err = OpenDataset(context.Background(), shards.OpenStore(shards.StoreConfig{}),
		[]DataSource{{Kind: SourceCleaned, Location: filepath.Join(dir, "x.parquet")}}, DatasetOptions{})
	if err == nil || !strings.Contains(err.Error(), "no image column") {
		t.Errorf("err = %v", err)
	}
}

func TestTokenizeUsesEachModesLengthAndPadding(t *testing.T) {
	vocab := []string{"[PAD]", "[unused]", "[CLS]", "[SEP]", "[UNK]", "[MASK]", "a", "picture", "of", "dog", "cat"}
	tok, err := tokenizer.New(vocab, tokenizer.BertUncased)
	if err != nil {
		t.Fatal(err)
	}
	b := &Batch{Texts: []string{"a dog", strings.Repeat("cat ", 50)}}
	ids, mask := b.Tokenize(tok, TextPretrain)
	if len(ids[0]) != 30 || len(ids[1]) != 30 || mask[0][3] != 1 || mask[0][4] != 0 {
		t.Errorf("pretrain: %v %v", ids[0], mask[0])
	}
	ids, _ = b.Tokenize(tok, TextRetrieval)
	if len(ids[0]) != 35 || len(ids[1]) != 35 || ids[1][34] != tok.SepID() {
		t.Errorf("retrieval: %v", ids[1])
	}
	short := &Batch{Texts: []string{"a dog", "cat"}}
	ids, mask = short.Tokenize(tok, TextCaption)
	// [CLS] a picture of a dog [SEP]: 7 tokens, the longest; the prompt is prepended.
	want := []int64{tok.ClsID(), 6, 7, 8, 6, 9, tok.SepID()}
	if !slices.Equal(ids[0], want) || len(ids[1]) != 7 || mask[1][6] != 0 {
		t.Errorf("caption: %v %v", ids, mask)
	}
	long := &Batch{Texts: []string{strings.Repeat("cat ", 50)}}
	if ids, _ := long.Tokenize(tok, TextCaption); len(ids[0]) != 40 {
		t.Errorf("caption truncates to %d", len(ids[0]))
	}
}

func TestEpochIteratorStopsEarlyOnClose(t *testing.T) {
	d, _ := openMixed(t, DatasetOptions{})
	it, err := d.Epoch(context.Background(), 0, testLoaderConfig(1), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := it.Next(); err != nil {
		t.Fatal(err)
	}
	it.Close()
	if _, err := it.Next(); !errors.Is(err, io.EOF) {
		t.Errorf("next after close: %v", err)
	}
	it.Close()
}

// Without the shuffle buffer, the sources still interleave at random: a batch is not
// one source after another.
func TestSourcesAreMergedAtRandomNotConcatenated(t *testing.T) {
	d, _ := openMixed(t, DatasetOptions{})
	cfg := testLoaderConfig(10)
	cfg.ShuffleBuffer = -1
	grouped := 0
	orders := map[string]bool{}
	for epoch := range 10 {
		it, err := d.Epoch(context.Background(), epoch, cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		b := drain(t, it)[0]
		orders[strings.Join(b.Sources, ",")] = true
		first := b.Sources[:4]
		if slices.Equal(first, []string{CaptionWeb, CaptionWeb, CaptionWeb, CaptionWeb}) || !slices.Contains(b.Sources[:7], CaptionHuman) {
			grouped++
		}
	}
	if grouped > 3 || len(orders) < 5 {
		t.Errorf("%d of 10 epochs look concatenated; %d distinct source orders", grouped, len(orders))
	}
}

// For evaluation sets: no augmentation (the inference resize, exactly Preprocess) and,
// without the shuffle buffer and one source, the file's own order.
func TestNoAugmentGivesInferencePixelsInFileOrder(t *testing.T) {
	dir := t.TempDir()
	imgs := [][]byte{pngBytes(t, 30, 20, 1), jpegBytes(t, 25, 40, 2), pngBytes(t, 33, 33, 3)}
	var entries []map[string]any
	for i, b := range imgs {
		name := []string{"a.png", "b.jpg", "c.png"}[i]
		writeFile(t, filepath.Join(dir, "img", name), b)
		entries = append(entries, map[string]any{"image": name, "caption": []string{"caption " + name}, "image_id": i})
	}
	writeFile(t, filepath.Join(dir, "test.json"), jsonBytes(t, entries))
	src, err := ParseDataSource("coco:" + filepath.Join(dir, "test.json") + "@" + filepath.Join(dir, "img"))
	if err != nil {
		t.Fatal(err)
	}
	d, err := OpenDataset(context.Background(), shards.OpenStore(shards.StoreConfig{}), []DataSource{src}, DatasetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := LoaderConfig{BatchSize: 3, Transform: imageproc.TrainTransform{Size: 12}, NoAugment: true, ShuffleBuffer: -1, Workers: 2}
	it, err := d.Epoch(context.Background(), 0, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	b := drain(t, it)[0]
	if !slices.Equal(b.Keys, []string{"0", "1", "2"}) {
		t.Fatalf("order %v", b.Keys)
	}
	per := 3 * 12 * 12
	for i, data := range imgs {
		want, _, _, err := imageproc.Preprocess(data, 12, imageproc.ImageLimits{})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(b.Pixels[i*per:(i+1)*per], want) {
			t.Errorf("image %d: pixels differ from Preprocess", i)
		}
	}
}
