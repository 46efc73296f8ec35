package demo

import (
	"fmt"
	"strings"

	"github.com/capfilt/capfilt/synth"
)

// Table is the paper's Table 1 in miniature, averaged over the seeds, with the CapFilt
// models' own numbers beside it.
type Table struct {
	Seeds []uint64   `json:"seeds"`
	Rows  []TableRow `json:"rows"`
	// Filter sums the filter's decisions over the seeds (the nucleus run; the beam run's
	// web decisions are the same filter's on the same texts).
	Filter synth.FilterReport `json:"filter"`
	// NoiseRatio is the share of captions the filter rejected, by run and source, over
	// the seeds: "nucleus/synthetic", "beam/synthetic", "nucleus/web".
	NoiseRatio map[string]float64 `json:"noise_ratio"`
	// Captioner sums the attribute scores over the seeds: of every nucleus caption, of
	// those kept, of the kept beam captions, and of the web text.
	Captioner CaptionerScores `json:"captioner"`
}

// TableRow is one pretraining data set.
type TableRow struct {
	Name string `json:"name"`
	// C and F say whether the captioner's captions were added (and how they were
	// drawn) and whether the filter was applied.
	C string `json:"c"`
	F bool   `json:"f"`
	// Mean is the mean over the seeds, PerSeed each seed's, Delta the mean's difference
	// to the baseline row.
	Mean    Scores   `json:"mean"`
	PerSeed []Scores `json:"per_seed"`
	Delta   Scores   `json:"delta"`
	Samples float64  `json:"samples"`
}

// Beats reports whether the row's mean is above the baseline's on TR@1, IR@1 and CIDEr,
// the three numbers the demo's claim is about.
func (r TableRow) Beats() (tr1, ir1, cider bool) {
	return r.Delta.TR1 > 0, r.Delta.IR1 > 0, r.Delta.CIDEr > 0
}

// NewTable averages the seeds' rows and sums their CapFilt numbers.
func NewTable(seeds []SeedResult) Table {
	t := Table{NoiseRatio: map[string]float64{}, Filter: synth.FilterReport{ByKind: map[synth.CaptionKind]synth.KindDecisions{}}}
	flags := map[string]struct {
		c string
		f bool
	}{RowBaseline: {"", false}, RowC: {"nucleus", false}, RowF: {"", true}, RowCF: {"nucleus", true}, RowCFBeam: {"beam", true}}
	counts := map[string][2]int64{}
	for _, sr := range seeds {
		t.Seeds = append(t.Seeds, sr.Seed)
		t.Filter.Add(sr.Captioner.Filter)
		c := &t.Captioner
		c.Nucleus.Add(sr.Captioner.Nucleus)
		c.NucleusKept.Add(sr.Captioner.NucleusKept)
		c.BeamKept.Add(sr.Captioner.BeamKept)
		c.Web.Add(sr.Captioner.Web)
		c.Mismatched += sr.Captioner.Mismatched
		for _, run := range sr.CapFilt {
			for src, n := range run.Captions {
				key := run.Name + "/" + src
				v := counts[key]
				counts[key] = [2]int64{v[0] + n.Rejected, v[1] + n.Accepted + n.Rejected}
			}
		}
	}
	for _, key := range []string{"nucleus/synthetic", "beam/synthetic", "nucleus/web"} {
		t.NoiseRatio[key] = ratio(counts[key][0], counts[key][1])
	}
	for i, name := range Rows {
		row := TableRow{Name: name, C: flags[name].c, F: flags[name].f}
		for _, sr := range seeds {
			if i < len(sr.Rows) && sr.Rows[i].Name == name {
				row.PerSeed = append(row.PerSeed, sr.Rows[i].Scores)
				row.Samples += float64(sr.Rows[i].Samples)
			}
		}
		row.Mean = meanScores(row.PerSeed)
		if n := len(row.PerSeed); n > 0 {
			row.Samples /= float64(n)
		}
		t.Rows = append(t.Rows, row)
	}
	for i := range t.Rows {
		t.Rows[i].Delta = t.Rows[i].Mean.minus(t.Rows[0].Mean)
	}
	return t
}

func meanScores(ss []Scores) Scores {
	var m Scores
	if len(ss) == 0 {
		return m
	}
	for _, s := range ss {
		m = m.plus(s)
	}
	return m.scaled(1 / float64(len(ss)))
}

func (s *Scores) fields() []*float64 {
	return []*float64{&s.TR1, &s.IR1, &s.TR5, &s.IR5, &s.BLEU4, &s.CIDEr, &s.AttrPrecision, &s.AttrCoverage}
}

func (s Scores) zip(o Scores, f func(a, b float64) float64) Scores {
	out := s
	of, rf := o.fields(), out.fields()
	for i, p := range rf {
		*p = f(*p, *of[i])
	}
	return out
}

func (s Scores) plus(o Scores) Scores  { return s.zip(o, func(a, b float64) float64 { return a + b }) }
func (s Scores) minus(o Scores) Scores { return s.zip(o, func(a, b float64) float64 { return a - b }) }
func (s Scores) scaled(k float64) Scores {
	return s.zip(Scores{}, func(a, _ float64) float64 { return a * k })
}

// columns are the table's score columns: header, value (as the paper prints it: ×100).
var columns = []struct {
	name string
	get  func(Scores) float64
}{
	{"TR@1", func(s Scores) float64 { return s.TR1 }},
	{"IR@1", func(s Scores) float64 { return s.IR1 }},
	{"TR@5", func(s Scores) float64 { return s.TR5 }},
	{"IR@5", func(s Scores) float64 { return s.IR5 }},
	{"B@4", func(s Scores) float64 { return s.BLEU4 }},
	{"CIDEr", func(s Scores) float64 { return s.CIDEr }},
	{"attr-P", func(s Scores) float64 { return s.AttrPrecision }},
	{"attr-C", func(s Scores) float64 { return s.AttrCoverage }},
}

func yesNo(b bool, yes string) string {
	if b {
		return yes
	}
	return "✗"
}

// Text is the table as the command prints it.
func (t Table) Text(res *Result) string {
	var b strings.Builder
	seeds := make([]string, len(t.Seeds))
	for i, s := range t.Seeds {
		seeds[i] = fmt.Sprint(s)
	}
	fmt.Fprintf(&b, "CapFilt, BLIP's Table 1 in miniature: recipe %s, seed(s) %s (mean over %d); every number was measured in this run.\n",
		res.Recipe.Name, strings.Join(seeds, " "), len(t.Seeds))
	fmt.Fprintf(&b, "Test set: %d images x %d captions. Retrieval: after a %d-step retrieval finetune on the annotated set, ITC top-%d re-ranked by ITM.\n",
		res.Recipe.World.TestImages, res.Recipe.World.CaptionsPerImage, res.Recipe.Retrieval.Steps, res.Recipe.RetrievalK)
	fmt.Fprintf(&b, "Captioning: after a %d-step caption finetune, beam search (%d beams). Scores x100.\n\n",
		res.Recipe.Caption.Steps, res.Recipe.Eval.NumBeams)
	fmt.Fprintf(&b, "%-11s %-8s %-3s %8s", "pretrain", "C", "F", "samples")
	for _, c := range columns {
		fmt.Fprintf(&b, " %7s", c.name)
	}
	b.WriteString("\n")
	for _, r := range t.Rows {
		fmt.Fprintf(&b, "%-11s %-8s %-3s %8.0f", r.Name, yesNo(r.C != "", r.C), yesNo(r.F, "✓"), r.Samples)
		for _, c := range columns {
			fmt.Fprintf(&b, " %7.1f", 100*c.get(r.Mean))
		}
		b.WriteString("\n")
	}
	b.WriteString("\n")
	for _, r := range t.Rows[1:] {
		tr, ir, ci := r.Beats()
		verdict := "beats the baseline on TR@1, IR@1 and CIDEr"
		if !(tr && ir && ci) {
			var not []string
			for _, x := range []struct {
				ok   bool
				name string
			}{{tr, "TR@1"}, {ir, "IR@1"}, {ci, "CIDEr"}} {
				if !x.ok {
					not = append(not, x.name)
				}
			}
			verdict = "does NOT beat the baseline on " + strings.Join(not, ", ")
		}
		fmt.Fprintf(&b, "%-10s vs %s: TR@1 %+5.1f  IR@1 %+5.1f  CIDEr %+6.1f  %s\n", r.Name, RowBaseline,
			100*r.Delta.TR1, 100*r.Delta.IR1, 100*r.Delta.CIDEr, verdict)
	}
	f := t.Filter
	fmt.Fprintf(&b, "\nfilter on the injected noise (web captions, ITM >= %.2f kept): precision %.3f, recall %.3f\n",
		res.Recipe.Threshold, f.Precision(), f.Recall())
	for _, k := range synth.CaptionKinds {
		d := f.ByKind[k]
		what := "wrongly rejected"
		if k.Noisy() {
			what = "caught"
		}
		fmt.Fprintf(&b, "  %-16s %5d of %5d %-16s (%.1f%%)\n", k, d.Rejected, d.Total, what, 100*f.KindRecall(k))
		if rows := f.WrongRows(); k == synth.KindWrongAttribute && len(rows) > 0 {
			parts := make([]string, len(rows))
			for i, a := range rows {
				parts[i] = fmt.Sprintf("%s %d/%d", a.Attribute, a.Rejected, a.Total)
			}
			fmt.Fprintf(&b, "    caught by what was changed: %s\n", strings.Join(parts, ", "))
		}
	}
	fmt.Fprintf(&b, "noise ratio (share of captions the filter rejected): synthetic nucleus %.1f%%, synthetic beam %.1f%%, web %.1f%%\n",
		100*t.NoiseRatio["nucleus/synthetic"], 100*t.NoiseRatio["beam/synthetic"], 100*t.NoiseRatio["nucleus/web"])
	c := t.Captioner
	fmt.Fprintf(&b, "captioner on the web images, attribute precision / coverage: nucleus %.3f / %.3f (kept %.3f / %.3f), beam kept %.3f / %.3f; the web text %.3f / %.3f\n",
		c.Nucleus.Precision(), c.Nucleus.Coverage(), c.NucleusKept.Precision(), c.NucleusKept.Coverage(),
		c.BeamKept.Precision(), c.BeamKept.Coverage(), c.Web.Precision(), c.Web.Coverage())
	if c.Mismatched > 0 {
		fmt.Fprintf(&b, "WARNING: %d nucleus captions differ between the filtered and the filter-off run of the same captioner and seed\n", c.Mismatched)
	}
	return b.String()
}
