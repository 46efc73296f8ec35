package synth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/capfilt/capfilt/blip/tokenizer"
	"github.com/capfilt/capfilt/imageproc"
	"github.com/capfilt/capfilt/shards"
)

// smallWorld is a world of a few dozen images, written in milliseconds.
func smallWorld(t *testing.T, dir string, seed uint64) *World {
	t.Helper()
	cfg := DefaultWorldConfig(dir)
	cfg.WebImages, cfg.PerShard, cfg.AnnotatedImages, cfg.TestImages, cfg.Seed = 130, 50, 12, 9, seed
	w, err := Generate(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func TestWebShardsReadBackThroughTheShardReaderWithTheirTruth(t *testing.T) {
	w := smallWorld(t, t.TempDir(), 1)
	if len(w.WebShards) != 3 || !strings.HasSuffix(w.WebPattern, "web/{00000..00002}.tar") {
		t.Fatalf("shards %v, pattern %s", w.WebShards, w.WebPattern)
	}
	formats := map[string]int{}
	var keys []string
	for _, path := range w.WebShards {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		r := shards.OpenTar(f, path, shards.Limits{})
		for {
			s, err := r.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.SkipReason != "" || s.Width != 48 || s.Height != 48 || !strings.HasSuffix(s.URL, "/"+s.Key+"."+s.ImageExt) {
				t.Fatalf("sample %s: skip %q, %d×%d, url %q", s.Key, s.SkipReason, s.Width, s.Height, s.URL)
			}
			keys = append(keys, s.Key)
			formats[s.ImageExt]++
			truth, ok := w.WebTruth(s.Key)
			if !ok || truth.Caption != s.Caption || s.Meta["caption"] != s.Caption || s.Meta["status"] != "success" {
				t.Fatalf("sample %s: caption %q, truth %+v, json caption %v", s.Key, s.Caption, truth, s.Meta["caption"])
			}
			var back WebTruth
			raw, _ := json.Marshal(s.Meta["synth"])
			if err := json.Unmarshal(raw, &back); err != nil || back.Kind != truth.Kind || back.CleanCaption != truth.Scene.CleanCaption() {
				t.Fatalf("sample %s: synth truth %s does not parse back (%v)", s.Key, raw, err)
			}
			img, format, err := imageproc.Decode(s.Image, imageproc.ImageLimits{})
			if err != nil || img.Width != 48 || format != map[string]string{"jpg": "jpeg", "png": "png"}[s.ImageExt] {
				t.Fatalf("sample %s: %s image decodes as %s (%v)", s.Key, s.ImageExt, format, err)
			}
			x, y := back.Scene.Centre(0, 48)
			if want := objectColours[back.Scene.Objects[0].Colour]; !near(pixelAt(t, img, x, y), want, 60) {
				t.Fatalf("sample %s: object 0 centre %v, want %v", s.Key, pixelAt(t, img, x, y), want)
			}
		}
		f.Close()
	}
	if !slices.Equal(keys, w.WebKeys()) || keys[0] != "000000000" || keys[50] != "000010000" || len(keys) != 130 {
		t.Fatalf("keys %v...", keys[:3])
	}
	if formats["jpg"] == 0 || formats["png"] == 0 {
		t.Errorf("formats %v: want a mix of JPEG and PNG", formats)
	}
}

func TestNoiseRatesAreExactAndEveryKindIsPresent(t *testing.T) {
	w := smallWorld(t, t.TempDir(), 2)
	// 130 captions: 40% noise (52, split 0.4/0.3/0.3), 45% incomplete (58.5), 15% full
	// (19.5); the largest remainders (20.8, 15.6, 15.6) take the three left over.
	want := map[CaptionKind]int{KindFull: 19, KindIncomplete: 58, KindWrongAttribute: 21, KindOtherImage: 16, KindJunk: 16}
	total := 0
	for _, k := range CaptionKinds {
		if w.Counts[k] != want[k] {
			t.Errorf("%s: %d captions, want %d", k, w.Counts[k], want[k])
		}
		total += w.Counts[k]
	}
	if total != 130 {
		t.Errorf("%d captions counted", total)
	}
	// The quotas hold exactly at any size and rate; the kinds are spread, not blocked.
	for _, n := range []int{7, 1000, 4321} {
		kinds := assignKinds(n, 0.37, 0.21, NoiseMix{1, 2, 3}, captionRNG(9, setWeb, 0))
		count := map[CaptionKind]int{}
		for _, k := range kinds {
			count[k]++
		}
		noisy := count[KindWrongAttribute] + count[KindOtherImage] + count[KindJunk]
		if len(kinds) != n || math.Abs(float64(noisy)-0.37*float64(n)) > 1 || math.Abs(float64(count[KindIncomplete])-0.21*float64(n)) > 1 ||
			math.Abs(float64(count[KindJunk])-0.37*float64(n)/2) > 1 {
			t.Errorf("n %d: %v", n, count)
		}
		if n >= 1000 && slices.Index(kinds, KindJunk) > n/10 {
			t.Errorf("n %d: the first junk caption is at %d", n, slices.Index(kinds, KindJunk))
		}
	}
	// Every caption is what its kind says.
	for _, key := range w.WebKeys() {
		tr, _ := w.WebTruth(key)
		s := AttributeAccuracy(tr.Scene, tr.Caption)
		ok := map[CaptionKind]bool{KindFull: s.Full(), KindIncomplete: s.True() && !s.Full(),
			KindWrongAttribute: !s.True() && s.Mentioned > 0 && tr.Detail != "", KindOtherImage: !s.True() && tr.SourceKey != "",
			KindJunk: s.Mentioned == 0}[tr.Kind]
		if !ok {
			t.Errorf("%s %s %q of %q scores %+v", key, tr.Kind, tr.Caption, tr.CleanCaption, s)
		}
		if tr.Kind == KindOtherImage {
			if src, found := w.WebTruth(tr.SourceKey); !found || src.Key == key {
				t.Errorf("%s: source %q", key, tr.SourceKey)
			}
		}
	}
}

func TestAnnotatedAndTestSetsAreCOCOStyleJSONOverImagesThatExist(t *testing.T) {
	w := smallWorld(t, t.TempDir(), 3)
	for _, tc := range []struct {
		set     ImageSet
		n       int
		partial int
	}{{w.Annotated, 12, 1}, {w.Test, 9, 0}} {
		data, err := os.ReadFile(tc.set.Annotations)
		if err != nil {
			t.Fatal(err)
		}
		var entries []struct {
			Image   string   `json:"image"`
			Caption []string `json:"caption"`
			ImageID int      `json:"image_id"`
		}
		if err := json.Unmarshal(data, &entries); err != nil || len(entries) != tc.n {
			t.Fatalf("%s: %d entries (%v)", tc.set.Annotations, len(entries), err)
		}
		for i, e := range entries {
			if e.ImageID != i+1 || len(e.Caption) != 5 || !strings.HasPrefix(e.Image, "images/") {
				t.Fatalf("%s entry %d: %+v", tc.set.Annotations, i, e)
			}
			raw, err := os.ReadFile(filepath.Join(filepath.Dir(tc.set.Annotations), e.Image))
			if err != nil {
				t.Fatal(err)
			}
			if img, _, err := imageproc.Decode(raw, imageproc.ImageLimits{}); err != nil || img.Width != 48 {
				t.Fatalf("%s: %v", e.Image, err)
			}
			scene := tc.set.Images[i].Truth.Scene
			full, distinct := 0, map[string]bool{}
			for _, c := range e.Caption {
				s := AttributeAccuracy(scene, c)
				if !s.True() {
					t.Errorf("%s image %d: caption %q is not true (%+v)", tc.set.Annotations, e.ImageID, c, s)
				}
				if s.Full() {
					full++
				}
				distinct[c] = true
			}
			if full < 5-tc.partial {
				t.Errorf("%s image %d: %d full captions of 5, want at least %d: %q", tc.set.Annotations, e.ImageID, full, 5-tc.partial, e.Caption)
			}
			if len(distinct) < 3 {
				t.Errorf("%s image %d: only %d distinct captions: %q", tc.set.Annotations, e.ImageID, len(distinct), e.Caption)
			}
		}
	}
}

func TestWorldOpensBackAndItsVocabularyLoads(t *testing.T) {
	dir := t.TempDir()
	w := smallWorld(t, dir, 4)
	back, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(back.WebKeys(), w.WebKeys()) || back.WebPattern != w.WebPattern || len(back.Test.Images) != 9 ||
		back.MaxCaptionTokens != w.MaxCaptionTokens || back.Config.Seed != 4 {
		t.Fatalf("opened world differs: %+v", back)
	}
	for _, key := range w.WebKeys() {
		a, _ := w.WebTruth(key)
		b, _ := back.WebTruth(key)
		if a.Caption != b.Caption || a.Kind != b.Kind || a.Scene.CleanCaption() != b.Scene.CleanCaption() {
			t.Fatalf("%s: %+v read back as %+v", key, a, b)
		}
	}
	tok, err := tokenizer.Load(w.VocabFile)
	if err != nil || tok.VocabSize() != len(WorldVocab()) {
		t.Fatalf("vocab.txt: %v", err)
	}
	var m map[string]any
	data, _ := os.ReadFile(filepath.Join(dir, "world.json"))
	if err := json.Unmarshal(data, &m); err != nil || m["format"] != manifestFormat {
		t.Fatalf("world.json: %v %v", err, m["format"])
	}
	// A world missing its manifest, or with a tampered shard, does not open.
	if err := os.WriteFile(w.WebShards[1], []byte("not a tar"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), "00001.tar") {
		t.Errorf("a broken shard opens: %v", err)
	}
	if _, err := Open(t.TempDir()); err == nil || !strings.Contains(err.Error(), "world.json") {
		t.Errorf("an empty folder opens: %v", err)
	}
}

// worldFiles reads every file of a world, by its path inside it.
func worldFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		files[relPath(dir, p)] = data
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func TestTheSameSeedWritesTheSameBytes(t *testing.T) {
	a, b, c := t.TempDir(), t.TempDir(), t.TempDir()
	smallWorld(t, a, 5)
	smallWorld(t, b, 5)
	smallWorld(t, c, 6)
	fa, fb, fc := worldFiles(t, a), worldFiles(t, b), worldFiles(t, c)
	if len(fa) != 3+12+9+5 || len(fa) != len(fb) {
		t.Fatalf("%d and %d files", len(fa), len(fb))
	}
	for name, data := range fa {
		if !bytes.Equal(data, fb[name]) {
			t.Errorf("%s differs between two worlds of seed 5", name)
		}
	}
	if bytes.Equal(fa["web/00000.tar"], fc["web/00000.tar"]) || bytes.Equal(fa["test/annotations.json"], fc["test/annotations.json"]) {
		t.Errorf("seeds 5 and 6 write the same world")
	}
	if !bytes.Equal(fa["vocab.txt"], fc["vocab.txt"]) {
		t.Errorf("the vocabulary depends on the seed")
	}
}

func TestAWorldIsNotWrittenOverUnlessAsked(t *testing.T) {
	dir := t.TempDir()
	smallWorld(t, dir, 7)
	keep := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(keep, []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultWorldConfig(dir)
	cfg.WebImages, cfg.AnnotatedImages, cfg.TestImages = 10, 2, 2
	if _, err := Generate(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("second world into %s: %v", dir, err)
	}
	cfg.Overwrite = true
	w, err := Generate(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(w.WebShards) != 1 || len(worldFiles(t, dir)) != 1+2+2+5+1 {
		t.Errorf("overwritten world: %d shards, files %d", len(w.WebShards), len(worldFiles(t, dir)))
	}
	if data, err := os.ReadFile(keep); err != nil || string(data) != "mine" {
		t.Errorf("overwrite touched a file that is not the world's: %v", err)
	}
}

func TestBadWorldConfigsNameTheField(t *testing.T) {
	for _, tc := range []struct {
		change func(*WorldConfig)
		want   string
	}{
		{func(c *WorldConfig) { c.Out = "" }, "output folder"},
		{func(c *WorldConfig) { c.WebImages = 1 }, "web images 1"},
		{func(c *WorldConfig) { c.Noise = 1.2 }, "noise 1.2"},
		{func(c *WorldConfig) { c.Noise = math.NaN() }, "noise NaN"},
		{func(c *WorldConfig) { c.Noise, c.Incomplete = 0.7, 0.5 }, "is over 1"},
		{func(c *WorldConfig) { c.ImageSize = 40 }, "image size 40"},
		{func(c *WorldConfig) { c.ImageSize = 56 }, "image size 56"},
		{func(c *WorldConfig) { c.PartialCaptions = 5 }, "partial captions 5"},
		{func(c *WorldConfig) { c.PerShard = 10000 }, "per shard 10000"},
		{func(c *WorldConfig) { c.NoiseMix = NoiseMix{} }, "noise mix"},
		{func(c *WorldConfig) { c.JPEGShare = -0.1 }, "jpeg share"},
	} {
		cfg := DefaultWorldConfig("out")
		tc.change(&cfg)
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("want an error naming %q, got %v", tc.want, err)
		}
	}
	if err := DefaultWorldConfig("out").Validate(); err != nil {
		t.Errorf("default config: %v", err)
	}
}

func TestNoiseMixParsesAndRefusesNonsense(t *testing.T) {
	m, err := ParseNoiseMix("wrong-attribute=0.5, other_image=0.25,junk=0.25")
	if err != nil || m != (NoiseMix{0.5, 0.25, 0.25}) {
		t.Fatalf("%+v %v", m, err)
	}
	if back, err := ParseNoiseMix(m.String()); err != nil || back != m {
		t.Errorf("%s reads back as %+v (%v)", m, back, err)
	}
	for _, bad := range []string{"", "junk", "junk=x", "junk=0.1x", "spam=1", "junk=-1", "junk=0", "junk=NaN"} {
		if _, err := ParseNoiseMix(bad); err == nil {
			t.Errorf("%q parses", bad)
		}
	}
}

func TestGenerateStopsWhenCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	cfg := DefaultWorldConfig(t.TempDir())
	if _, err := Generate(ctx, cfg); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled generate: %v", err)
	}
}
