package demo

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"os"

	"github.com/capfilt/capfilt/shards"
	"github.com/capfilt/capfilt/synth"
)

// WriteReport writes the demo's report: one HTML file that opens with no server, its
// charts inline SVG and its images data: URIs.
func WriteReport(path string, res *Result) error {
	data, err := reportData(res)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := reportTemplate.Execute(&buf, data); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

type reportView struct {
	Res     *Result
	Text    string
	Columns []string
	Rows    []rowView
	Seeds   []seedView
	Recipe  string
}

type rowView struct {
	Name, C, F string
	Samples    string
	Cells      []cellView
}

type cellView struct {
	Value string
	Class string // "up", "down" or ""
}

type seedView struct {
	Seed       uint64
	Rows       []rowView
	Curves     []template.HTML
	Histograms []template.HTML
	Gallery    []GalleryItem
	Filter     synth.FilterReport
}

func reportData(res *Result) (*reportView, error) {
	v := &reportView{Res: res, Text: res.Table.Text(res)}
	for _, c := range columns {
		v.Columns = append(v.Columns, c.name)
	}
	base := Scores{}
	if len(res.Table.Rows) > 0 {
		base = res.Table.Rows[0].Mean
	}
	for _, r := range res.Table.Rows {
		v.Rows = append(v.Rows, rowCells(r.Name, r.C, r.F, fmt.Sprintf("%.0f", r.Samples), r.Mean, base))
	}
	for _, sr := range res.Seeds {
		sv := seedView{Seed: sr.Seed, Gallery: sr.Gallery, Filter: sr.Captioner.Filter}
		var sbase Scores
		for i, r := range sr.Rows {
			if i == 0 {
				sbase = r.Scores
			}
			tr := res.Table.Rows[i]
			sv.Rows = append(sv.Rows, rowCells(r.Name, tr.C, tr.F, fmt.Sprint(r.Samples), r.Scores, sbase))
		}
		for _, tr := range sr.Training {
			sv.Curves = append(sv.Curves, template.HTML(lossChart(tr)))
		}
		sv.Histograms = histograms(sr, res.Recipe.Threshold)
		v.Seeds = append(v.Seeds, sv)
	}
	recipe, err := json.MarshalIndent(res.Recipe, "", "  ")
	if err != nil {
		return nil, err
	}
	v.Recipe = string(recipe)
	return v, nil
}

func rowCells(name, c string, f bool, samples string, s, base Scores) rowView {
	rv := rowView{Name: name, C: yesNo(c != "", c), F: yesNo(f, "✓"), Samples: samples}
	for _, col := range columns {
		cell := cellView{Value: fmt.Sprintf("%.1f", 100*col.get(s))}
		if name != RowBaseline {
			switch d := col.get(s) - col.get(base); {
			case d > 0:
				cell.Class = "up"
			case d < 0:
				cell.Class = "down"
			}
		}
		rv.Cells = append(rv.Cells, cell)
	}
	return rv
}

// lossChart is one training run's logged losses against the step.
func lossChart(tr TrainingRun) string {
	parts := []struct {
		name, colour string
		get          func(i int) float64
	}{
		{"total", "#222", func(i int) float64 { return tr.History[i].Total }},
		{"ITC", "#1f77b4", func(i int) float64 { return tr.History[i].ITC }},
		{"ITM", "#d62728", func(i int) float64 { return tr.History[i].ITM }},
		{"LM", "#2ca02c", func(i int) float64 { return tr.History[i].LM }},
	}
	var series []Series
	for _, p := range parts {
		s := Series{Name: p.name, Colour: p.colour}
		any := false
		for i, rec := range tr.History {
			y := p.get(i)
			any = any || y != 0
			s.X, s.Y = append(s.X, float64(rec.Step)), append(s.Y, y)
		}
		if any && !(p.name == "total" && len(series) == 0 && tr.Task == "caption") {
			series = append(series, s)
		}
	}
	return LineChart(fmt.Sprintf("%s (%d steps, %.0fs)", tr.Name, tr.Steps, tr.Seconds), "step", series)
}

// histograms are the ITM match probabilities: of the web text, true and noisy apart (the
// filter-off run keeps every caption with its score), and of the synthetic captions of
// the nucleus and beam runs (their stats' histograms).
func histograms(sr SeedResult, threshold float64) []template.HTML {
	var all *CapFiltRun
	byName := map[string]*CapFiltRun{}
	for i := range sr.CapFilt {
		byName[sr.CapFilt[i].Name] = &sr.CapFilt[i]
	}
	all = byName["nucleus-all"]
	var out []template.HTML
	if all != nil && all.WebTrueITM != nil {
		out = append(out, template.HTML(Histogram("ITM of the web text, by the truth", "P(match)", 0, 1, []Series{
			{Name: "true (full, incomplete)", Colour: "#2ca02c", Y: all.WebTrueITM},
			{Name: "injected noise", Colour: "#d62728", Y: all.WebNoiseITM},
		}, threshold)))
	}
	var syn []Series
	for _, x := range []struct{ run, name, colour string }{{"nucleus", "nucleus", "#1f77b4"}, {"beam", "beam", "#ff7f0e"}} {
		if r := byName[x.run]; r != nil && r.ITM[shards.SourceSynthetic] != nil {
			h := r.ITM[shards.SourceSynthetic]
			s := Series{Name: x.name, Colour: x.colour}
			for _, c := range h.Counts {
				s.Y = append(s.Y, float64(c))
			}
			syn = append(syn, s)
		}
	}
	if all != nil && all.ITM[shards.SourceWeb] != nil {
		s := Series{Name: "web text", Colour: "#7f7f7f"}
		for _, c := range all.ITM[shards.SourceWeb].Counts {
			s.Y = append(s.Y, float64(c))
		}
		syn = append(syn, s)
	}
	out = append(out, template.HTML(Histogram("ITM of web text and synthetic captions", "P(match)", 0, 1, syn, threshold)))
	return out
}

var reportTemplate = template.Must(template.New("report").Funcs(template.FuncMap{
	"pct":     func(f float64) string { return fmt.Sprintf("%.1f%%", 100*f) },
	"f3":      func(f float64) string { return fmt.Sprintf("%.3f", f) },
	"f2":      func(f float32) string { return fmt.Sprintf("%.2f", f) },
	"kinds":   func() []synth.CaptionKind { return synth.CaptionKinds },
	"kindRow": func(r synth.FilterReport, k synth.CaptionKind) synth.KindDecisions { return r.ByKind[k] },
	"recall": func(r synth.FilterReport, k synth.CaptionKind) string {
		return fmt.Sprintf("%.1f%%", 100*r.KindRecall(k))
	},
	// dataURL marks the gallery's own data: URIs (made by dataURI from image bytes) safe.
	"dataURL": func(s string) template.URL { return template.URL(s) },
	"keptClass": func(kept bool) string {
		if kept {
			return "kept"
		}
		return "rejected"
	},
}).Parse(reportHTML))
