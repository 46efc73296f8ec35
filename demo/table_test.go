package demo

import (
	"math"
	"strings"
	"testing"

	"github.com/capfilt/capfilt/shards"
	"github.com/capfilt/capfilt/synth"
)

// seedWith is a seed whose rows score tr1 on TR@1 and the baseline's other numbers,
// with a filter that rejected the given counts.
func seedWith(seed uint64, tr1 []float64, cider []float64) SeedResult {
	sr := SeedResult{Seed: seed, Captioner: CaptionerScores{Filter: synth.FilterReport{ByKind: map[synth.CaptionKind]synth.KindDecisions{
		synth.KindFull: {Total: 10, Rejected: 1}, synth.KindIncomplete: {Total: 30, Rejected: 2},
		synth.KindWrongAttribute: {Total: 8, Rejected: 4}, synth.KindOtherImage: {Total: 6, Rejected: 6}, synth.KindJunk: {Total: 6, Rejected: 5},
	}, WrongByAttribute: map[string]synth.KindDecisions{"colour": {Total: 3, Rejected: 3}, "shape": {Total: 5, Rejected: 1}}}}}
	for i, name := range Rows {
		sr.Rows = append(sr.Rows, RowResult{Name: name, Samples: int64(100 + i),
			Scores: Scores{TR1: tr1[i], IR1: 0.5, CIDEr: cider[i], AttrPrecision: 0.8}})
	}
	sr.CapFilt = []CapFiltRun{
		{Name: "nucleus", Captions: map[string]shards.CaptionCounts{shards.SourceWeb: {Accepted: 40, Rejected: 20}, shards.SourceSynthetic: {Accepted: 45, Rejected: 15}}},
		{Name: "beam", Captions: map[string]shards.CaptionCounts{shards.SourceWeb: {Accepted: 40, Rejected: 20}, shards.SourceSynthetic: {Accepted: 51, Rejected: 9}}},
	}
	return sr
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestTableAveragesTheSeedsAndComparesEachRowToTheBaseline(t *testing.T) {
	seeds := []SeedResult{
		seedWith(1, []float64{0.30, 0.32, 0.29, 0.40, 0.35}, []float64{1.0, 1.1, 1.2, 1.3, 0.9}),
		seedWith(2, []float64{0.34, 0.30, 0.33, 0.44, 0.36}, []float64{1.2, 1.1, 1.0, 1.5, 1.1}),
	}
	tab := NewTable(seeds)
	if len(tab.Rows) != len(Rows) || len(tab.Seeds) != 2 {
		t.Fatalf("%d rows, %d seeds", len(tab.Rows), len(tab.Seeds))
	}
	base, cf, beam := tab.Rows[0], tab.Rows[3], tab.Rows[4]
	if !near(base.Mean.TR1, 0.32) || !near(cf.Mean.TR1, 0.42) || !near(cf.Delta.TR1, 0.10) || !near(cf.Delta.CIDEr, 0.3) {
		t.Errorf("baseline TR@1 %v, +C+F %v (Δ %v), Δ CIDEr %v", base.Mean.TR1, cf.Mean.TR1, cf.Delta.TR1, cf.Delta.CIDEr)
	}
	if !near(cf.Samples, 103) || len(cf.PerSeed) != 2 {
		t.Errorf("+C+F samples %v, per seed %d", cf.Samples, len(cf.PerSeed))
	}
	if tr, ir, ci := cf.Beats(); !tr || ir || !ci {
		t.Errorf("+C+F beats: TR@1 %v IR@1 %v CIDEr %v; want true, false (equal is not better), true", tr, ir, ci)
	}
	if tr, _, ci := beam.Beats(); !tr || ci {
		t.Errorf("beam beats: TR@1 %v CIDEr %v", tr, ci)
	}
	// Decisions are summed over the seeds before any ratio is taken.
	if d := tab.Filter.ByKind[synth.KindJunk]; d.Total != 12 || d.Rejected != 10 {
		t.Errorf("junk decisions %+v", d)
	}
	if p := tab.Filter.Precision(); !near(p, 30.0/36) {
		t.Errorf("precision %v, want 30/36", p)
	}
	if !near(tab.NoiseRatio["nucleus/synthetic"], 0.25) || !near(tab.NoiseRatio["beam/synthetic"], 0.15) || !near(tab.NoiseRatio["nucleus/web"], 1.0/3) {
		t.Errorf("noise ratios %v", tab.NoiseRatio)
	}
}

func TestTableTextSaysWhichRowsDoNotBeatTheBaseline(t *testing.T) {
	res := &Result{Recipe: QuickRecipe()}
	res.Seeds = []SeedResult{seedWith(7, []float64{0.30, 0.32, 0.29, 0.40, 0.35}, []float64{1.0, 1.1, 1.2, 1.3, 0.9})}
	res.Table = NewTable(res.Seeds)
	text := res.Table.Text(res)
	for _, want := range []string{
		"seed(s) 7", "noisy web", "+C+F beam",
		"+C+F       vs noisy web: TR@1 +10.0  IR@1  +0.0  CIDEr  +30.0  does NOT beat the baseline on IR@1",
		"+F         vs noisy web: TR@1  -1.0  IR@1  +0.0  CIDEr  +20.0  does NOT beat the baseline on TR@1, IR@1\n",
		"precision 0.833", "synthetic nucleus 25.0%, synthetic beam 15.0%, web 33.3%",
		"caught by what was changed: colour 3/3, shape 1/5\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("table text lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "beats the baseline on TR@1, IR@1 and CIDEr") {
		t.Errorf("no row beats the baseline on IR@1 here, yet the text says one does:\n%s", text)
	}
	lines := strings.Split(text, "\n")
	header := -1
	for i, l := range lines {
		if strings.HasPrefix(l, "pretrain ") {
			header = i
		}
	}
	if header < 0 || !strings.HasPrefix(lines[header+4], "+C+F ") || !strings.Contains(lines[header+4], "40.0") {
		t.Errorf("the +C+F row is not the table's fourth with TR@1 40.0:\n%s", text)
	}
}
