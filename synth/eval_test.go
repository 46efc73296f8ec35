package synth

import (
	"context"
	"strings"
	"testing"
)

func TestFilterReportCountsRejectionsByNoiseKind(t *testing.T) {
	w := smallWorld(t, t.TempDir(), 8)
	keepIf := func(keep func(WebTruth) bool) map[string]bool {
		kept := map[string]bool{}
		for _, key := range w.WebKeys() {
			tr, _ := w.WebTruth(key)
			kept[key] = keep(tr)
		}
		return kept
	}
	perfect, err := w.EvaluateFilter(keepIf(func(tr WebTruth) bool { return !tr.Kind.Noisy() }))
	if err != nil {
		t.Fatal(err)
	}
	if perfect.Precision() != 1 || perfect.Recall() != 1 || perfect.KeptNoise() != 0 {
		t.Errorf("a perfect filter: %s", perfect)
	}
	// A filter that catches only junk, and rejects the incomplete captions too.
	junkOnly, err := w.EvaluateFilter(keepIf(func(tr WebTruth) bool { return tr.Kind == KindFull || tr.Kind.Noisy() && tr.Kind != KindJunk }))
	if err != nil {
		t.Fatal(err)
	}
	junk, incomplete, noise := w.Counts[KindJunk], w.Counts[KindIncomplete], w.Counts[KindJunk]+w.Counts[KindOtherImage]+w.Counts[KindWrongAttribute]
	for _, c := range []struct {
		name      string
		got, want float64
	}{
		{"precision", junkOnly.Precision(), float64(junk) / float64(junk+incomplete)},
		{"recall", junkOnly.Recall(), float64(junk) / float64(noise)},
		{"junk recall", junkOnly.KindRecall(KindJunk), 1},
		{"wrong-attribute recall", junkOnly.KindRecall(KindWrongAttribute), 0},
		{"incomplete false rejections", junkOnly.KindRecall(KindIncomplete), 1},
		{"full false rejections", junkOnly.KindRecall(KindFull), 0},
		{"junk precision alone", junkOnly.KindPrecision(KindJunk), float64(junk) / float64(junk+incomplete)},
		{"kept noise", junkOnly.KeptNoise(), float64(noise-junk) / float64(noise-junk+w.Counts[KindFull])},
	} {
		if c.got != c.want {
			t.Errorf("%s: %g, want %g", c.name, c.got, c.want)
		}
	}
	// A filter that sees colours only: the wrong-attribute split says so.
	colourOnly, err := w.EvaluateFilter(keepIf(func(tr WebTruth) bool { return !strings.HasPrefix(tr.Detail, "colour:") }))
	if err != nil {
		t.Fatal(err)
	}
	sum := 0
	for a, d := range colourOnly.WrongByAttribute {
		sum += d.Total
		if want := map[bool]int{true: d.Total}[a == "colour"]; d.Rejected != want {
			t.Errorf("changed %s: %d of %d caught by a colour-only filter, want %d", a, d.Rejected, d.Total, want)
		}
	}
	if sum != w.Counts[KindWrongAttribute] || colourOnly.WrongByAttribute["colour"].Total == 0 {
		t.Errorf("the split by attribute %v covers %d wrong captions, want %d with some colour changes", colourOnly.WrongByAttribute, sum, w.Counts[KindWrongAttribute])
	}
	var both FilterReport
	both.Add(colourOnly)
	both.Add(junkOnly)
	if d := both.WrongByAttribute["colour"]; d.Total != 2*colourOnly.WrongByAttribute["colour"].Total || d.Rejected != d.Total/2 ||
		both.ByKind[KindJunk].Rejected != junk {
		t.Errorf("two reports added: %+v", both)
	}
	// Absent keys were rejected: an empty set rejects everything.
	none, _ := w.EvaluateFilter(nil)
	if none.Recall() != 1 || none.ByKind[KindFull].Rejected != w.Counts[KindFull] {
		t.Errorf("keeping nothing: %s", none)
	}
	if _, err := w.EvaluateFilter(map[string]bool{"999999999": true}); err == nil || !strings.Contains(err.Error(), "999999999") {
		t.Errorf("an unknown key: %v", err)
	}
}

func TestCaptionScoresOfWebAndTestImages(t *testing.T) {
	w := smallWorld(t, t.TempDir(), 9)
	clean, junk := map[string]string{}, map[string]string{}
	for _, key := range w.WebKeys()[:20] {
		tr, _ := w.WebTruth(key)
		clean[key], junk[key] = tr.CleanCaption, "click here"
	}
	if s, err := w.ScoreWebCaptions(clean); err != nil || s.Precision() != 1 || s.Coverage() != 1 {
		t.Errorf("clean captions score %+v (%v)", s, err)
	}
	if s, err := w.ScoreWebCaptions(junk); err != nil || s.Mentioned != 0 || s.Coverage() != 0 || s.Total == 0 {
		t.Errorf("junk scores %+v (%v)", s, err)
	}
	if _, err := w.ScoreWebCaptions(map[string]string{"nope": "a circle"}); err == nil {
		t.Error("an unknown key scores")
	}
	byID := map[int]string{}
	for _, img := range w.Test.Images {
		byID[img.ImageID] = img.Captions[0]
	}
	if s, err := w.Test.Score(byID); err != nil || !s.Full() {
		t.Errorf("test references score %+v (%v)", s, err)
	}
	if _, err := w.Test.Score(map[int]string{0: "a circle"}); err == nil {
		t.Error("image_id 0 scores")
	}
}

// BenchmarkGenerate measures how fast a world is written, in images per second over all
// three sets (render, JPEG/PNG coding, captions and their checks, tars and files).
func BenchmarkGenerate(b *testing.B) {
	dir := b.TempDir()
	cfg := DefaultWorldConfig(dir)
	cfg.Overwrite = true
	images := cfg.WebImages + cfg.AnnotatedImages + cfg.TestImages
	for b.Loop() {
		if _, err := Generate(context.Background(), cfg); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(images*b.N)/b.Elapsed().Seconds(), "images/s")
}
