package demo

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/capfilt/capfilt/shards"
	"github.com/capfilt/capfilt/synth"
)

func inUnit(t *testing.T, what string, v, hi float64) {
	t.Helper()
	if !(v >= 0 && v <= hi) {
		t.Errorf("%s = %v, outside [0, %v]", what, v, hi)
	}
}

// The quick demo, end to end: world, pretraining, finetunes, three CapFilt runs through
// the embedded pipeline with two workers, four more pretrainings, the evaluations, the
// table and the report.
func TestQuickDemoEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("trains 15 tiny models")
	}
	dir := filepath.Join(t.TempDir(), "demo")
	r := QuickRecipe()
	var stages []StageEvent
	res, err := Run(context.Background(), Config{Workdir: dir, Recipe: r, Seeds: []uint64{4}, Workers: 2,
		Hooks: Hooks{Stage: func(ev StageEvent) { stages = append(stages, ev) }}})
	if err != nil {
		t.Fatal(err)
	}
	web := int64(r.World.WebImages)

	// Every stage ran, started and ended, and was timed.
	if len(res.Stages) != len(stageNames) || len(stages) != 2*len(stageNames) {
		t.Fatalf("%d stage times, %d stage events; want %d and %d", len(res.Stages), len(stages), len(stageNames), 2*len(stageNames))
	}
	for i, st := range res.Stages {
		if st.Name != stageNames[i] || st.Seconds <= 0 {
			t.Errorf("stage %d is %q in %vs, want %q", i, st.Name, st.Seconds, stageNames[i])
		}
	}

	// The table is complete and every number is in its range.
	tab := res.Table
	if len(tab.Rows) != len(Rows) {
		t.Fatalf("%d rows", len(tab.Rows))
	}
	for i, row := range tab.Rows {
		if row.Name != Rows[i] || len(row.PerSeed) != 1 || row.Samples <= 0 {
			t.Errorf("row %d: %q with %d seeds and %v samples", i, row.Name, len(row.PerSeed), row.Samples)
		}
		m := row.Mean
		for name, v := range map[string]float64{"TR@1": m.TR1, "IR@1": m.IR1, "TR@5": m.TR5, "IR@5": m.IR5, "BLEU-4": m.BLEU4,
			"attribute precision": m.AttrPrecision, "attribute coverage": m.AttrCoverage} {
			inUnit(t, row.Name+" "+name, v, 1)
		}
		inUnit(t, row.Name+" CIDEr", m.CIDEr, 10)
		if m.TR5 < m.TR1 || m.IR5 < m.IR1 {
			t.Errorf("%s: R@5 below R@1: %+v", row.Name, m)
		}
	}
	if samples := tab.Rows[0].Samples; samples != float64(web)+float64(r.World.AnnotatedImages*r.World.CaptionsPerImage) {
		t.Errorf("the baseline reads %v samples an epoch, want every web image and annotated caption", samples)
	}

	// The filter's decisions cover every web caption; the filter-off run kept everything.
	sr := res.Seeds[0]
	world, err := synth.Open(sr.WorldDir)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, k := range synth.CaptionKinds {
		d := tab.Filter.ByKind[k]
		total += d.Total
		if d.Total != world.Counts[k] || d.Rejected > d.Total {
			t.Errorf("the filter report has %d %s captions, %d rejected; the world wrote %d", d.Total, k, d.Rejected, world.Counts[k])
		}
	}
	if int64(total) != web {
		t.Errorf("the filter report covers %d web captions of %d", total, web)
	}
	var wrong synth.KindDecisions
	for _, d := range tab.Filter.WrongByAttribute {
		wrong.Total, wrong.Rejected = wrong.Total+d.Total, wrong.Rejected+d.Rejected
	}
	if wrong != tab.Filter.ByKind[synth.KindWrongAttribute] {
		t.Errorf("the wrong attributes split by what was changed sum to %+v, want %+v", wrong, tab.Filter.ByKind[synth.KindWrongAttribute])
	}
	inUnit(t, "filter precision", tab.Filter.Precision(), 1)
	inUnit(t, "filter recall", tab.Filter.Recall(), 1)
	if len(sr.CapFilt) != 3 {
		t.Fatalf("%d CapFilt runs", len(sr.CapFilt))
	}
	for _, c := range sr.CapFilt {
		n := c.Captions[shards.SourceWeb]
		if c.Images != web || n.Accepted+n.Rejected != web || c.Captions[shards.SourceSynthetic].Accepted+c.Captions[shards.SourceSynthetic].Rejected != web {
			t.Errorf("run %s read %d images and decided %+v web, %+v synthetic captions; want %d of each", c.Name, c.Images, n, c.Captions[shards.SourceSynthetic], web)
		}
		if c.Name == "nucleus-all" && (c.ImagesKept != web || n.Rejected != 0) {
			t.Errorf("the filter-off run kept %d images and rejected %d web captions", c.ImagesKept, n.Rejected)
		}
	}
	if sr.Captioner.Mismatched != 0 {
		t.Errorf("%d nucleus captions differ between two runs of the same captioner and seed", sr.Captioner.Mismatched)
	}
	for _, key := range []string{"nucleus/synthetic", "beam/synthetic", "nucleus/web"} {
		inUnit(t, "noise ratio "+key, tab.NoiseRatio[key], 1)
	}
	if sr.Captioner.Nucleus.Total == 0 || sr.Captioner.Web.Total == 0 {
		t.Errorf("the captioner's captions were not scored: %+v", sr.Captioner)
	}

	// Every training run left its loss curve: 5 pretrainings, CapFilt's captioner and
	// filter, and two evaluation finetunes for each of the 5 rows.
	if len(sr.Training) != 17 {
		t.Errorf("%d training runs recorded, want 17", len(sr.Training))
	}
	for _, tr := range sr.Training {
		if len(tr.History) == 0 || tr.Steps == 0 {
			t.Errorf("training run %s has no history", tr.Name)
		}
	}
	if len(sr.Gallery) == 0 {
		t.Error("empty gallery")
	}

	// The files: the report parses and references nothing outside itself, the table
	// is what was printed, demo.json reads back.
	refs, svgs, _ := reportRefs(t, res.Report)
	checkRefs(t, res.Report, refs)
	if svgs < 17+2 {
		t.Errorf("%d charts in the report, want a loss curve per run and two histograms", svgs)
	}
	if got := readFile(t, res.TableFile); got != tab.Text(res) || !strings.Contains(got, "+C+F beam") {
		t.Errorf("table.txt is not the table:\n%s", got)
	}
	var back Result
	if err := json.Unmarshal([]byte(readFile(t, filepath.Join(dir, marker))), &back); err != nil || len(back.Table.Rows) != len(Rows) {
		t.Errorf("demo.json does not read back: %v", err)
	}

	// A second demo into the same folder replaces the first one's files, nothing else.
	if err := prepareWorkdir(dir); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("the earlier demo's files are left: %v", entries)
	}
}

func TestWorkdirHoldingSomethingElseIsRefused(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "thesis.tex"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := prepareWorkdir(dir); err == nil || !strings.Contains(err.Error(), "holds no earlier demo") {
		t.Errorf("a folder without a demo: %v", err)
	}
	// With an earlier demo's marker, a foreign file still stops it, and nothing is removed.
	if err := os.WriteFile(filepath.Join(dir, marker), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "seed-3"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := prepareWorkdir(dir); err == nil || !strings.Contains(err.Error(), "thesis.tex") {
		t.Errorf("a demo folder with a foreign file: %v", err)
	}
	for _, name := range []string{marker, "seed-3", "thesis.tex"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("%s was removed: %v", name, err)
		}
	}
	if err := os.Remove(filepath.Join(dir, "thesis.tex")); err != nil {
		t.Fatal(err)
	}
	if err := prepareWorkdir(dir); err != nil {
		t.Errorf("an earlier demo alone: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("left %v", entries)
	}
}
