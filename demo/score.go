package demo

import (
	"context"
	"fmt"
	"strconv"

	"github.com/capfilt/capfilt/shards"
	"github.com/capfilt/capfilt/synth"
	"github.com/capfilt/capfilt/trainer"
	"github.com/capfilt/capfilt/trainer/eval"
)

// Scores are one row's test-set numbers.
type Scores struct {
	TR1   float64 `json:"tr1"`
	IR1   float64 `json:"ir1"`
	TR5   float64 `json:"tr5"`
	IR5   float64 `json:"ir5"`
	BLEU4 float64 `json:"bleu4"`
	CIDEr float64 `json:"cider"`
	// AttrPrecision and AttrCoverage score the row's test captions against the
	// pictures (synth.AttributeAccuracy, micro-averaged).
	AttrPrecision float64 `json:"attr_precision"`
	AttrCoverage  float64 `json:"attr_coverage"`
}

// CaptionerScores are the CapFilt models' own numbers on the web set.
type CaptionerScores struct {
	// Filter is the filter's decisions on the web captions against the injected noise.
	Filter synth.FilterReport `json:"filter"`
	// Nucleus is every nucleus caption of the web images (the filter-off run) against
	// the pictures; NucleusKept those the filter kept, BeamKept the beam captions kept.
	Nucleus     synth.AttributeScore `json:"nucleus"`
	NucleusKept synth.AttributeScore `json:"nucleus_kept"`
	BeamKept    synth.AttributeScore `json:"beam_kept"`
	// WebTrue is the web captions against the pictures, for comparison.
	Web synth.AttributeScore `json:"web"`
	// Mismatched counts images whose nucleus caption differs between the filtered and
	// the filter-off run (the same captioner and seed: it should be 0).
	Mismatched int `json:"mismatched"`
}

// scoreCapFilt scores the filter against the injected noise and the captions against
// the pictures, and picks the gallery.
func (s *seedRun) scoreCapFilt(outs map[string]*CapFiltRun) error {
	nucleus, all, beam := outs["nucleus"], outs["nucleus-all"], outs["beam"]
	kept := map[string]bool{}
	for key, row := range nucleus.rows {
		_, kept[key] = caption(row, shards.SourceWeb)
	}
	rep, err := s.world.EvaluateFilter(kept)
	if err != nil {
		return err
	}
	sc := CaptionerScores{Filter: rep}
	synthetic := func(run *CapFiltRun) map[string]string {
		m := map[string]string{}
		for key, row := range run.rows {
			if c, ok := caption(row, shards.SourceSynthetic); ok {
				m[key] = c.Text
			}
		}
		return m
	}
	allCaps, keptCaps := synthetic(all), synthetic(nucleus)
	if len(allCaps) != len(s.world.WebKeys()) {
		return fmt.Errorf("the filter-off run kept %d synthetic captions of %d web images", len(allCaps), len(s.world.WebKeys()))
	}
	for key, c := range keptCaps {
		if allCaps[key] != c {
			sc.Mismatched++
		}
	}
	web := map[string]string{}
	for _, key := range s.world.WebKeys() {
		t, _ := s.world.WebTruth(key)
		web[key] = t.Caption
	}
	for _, x := range []struct {
		dst  *synth.AttributeScore
		caps map[string]string
	}{{&sc.Nucleus, allCaps}, {&sc.NucleusKept, keptCaps}, {&sc.BeamKept, synthetic(beam)}, {&sc.Web, web}} {
		if *x.dst, err = s.world.ScoreWebCaptions(x.caps); err != nil {
			return err
		}
	}
	all.WebTrueITM, all.WebNoiseITM = make([]float64, shards.HistogramBins), make([]float64, shards.HistogramBins)
	for key, row := range all.rows {
		t, _ := s.world.WebTruth(key)
		c, _ := caption(row, shards.SourceWeb)
		bin := min(int(float64(c.ITM)*shards.HistogramBins), shards.HistogramBins-1)
		if t.Kind.Noisy() {
			all.WebNoiseITM[bin]++
		} else {
			all.WebTrueITM[bin]++
		}
	}
	s.out.Captioner = sc
	s.out.Gallery = s.gallery(nucleus, all)
	return nil
}

// evaluate scores a row on the test set: captions by the caption finetune (beam
// search), retrieval by the retrieval finetune (ITC top-k re-ranked by ITM).
func (s *seedRun) evaluate(ctx context.Context, row, captionModel, retrievalModel string) (RowResult, error) {
	rr := RowResult{Name: row}
	set, err := trainer.OpenEvalSet(s.world.Test.Annotations, "")
	if err != nil {
		return rr, err
	}
	cm, err := loadModel(captionModel)
	if err != nil {
		return rr, err
	}
	ce, err := trainer.EvalCaption(ctx, cm, set, trainer.CaptionOptions{Generation: s.cfg.Recipe.Eval, BatchSize: 50})
	cm.Close()
	if err != nil {
		return rr, err
	}
	byID := map[int]string{}
	for i, p := range ce.Predictions {
		id, err := strconv.Atoi(string(set.Refs.Images[i].ID))
		if err != nil {
			return rr, fmt.Errorf("test image id %q: %w", set.Refs.Images[i].ID, err)
		}
		byID[id] = p.Caption
	}
	attr, err := s.world.Test.Score(byID)
	if err != nil {
		return rr, err
	}
	rm, err := loadModel(retrievalModel)
	if err != nil {
		return rr, err
	}
	ret, err := trainer.EvalRetrieval(ctx, rm, set, trainer.RetrievalOptions{K: s.cfg.Recipe.RetrievalK, BatchSize: 64})
	rm.Close()
	if err != nil {
		return rr, err
	}
	rr.Scores = scoresOf(ret, ce.Scores, attr)
	return rr, nil
}

func scoresOf(r eval.RetrievalScores, c eval.CaptionScores, a synth.AttributeScore) Scores {
	return Scores{TR1: r.TR1, IR1: r.IR1, TR5: r.TR5, IR5: r.IR5, BLEU4: c.Bleu4, CIDEr: c.CIDEr,
		AttrPrecision: a.Precision(), AttrCoverage: a.Coverage()}
}

// describeRows names each row's data and counts its samples per epoch.
func (s *seedRun) describeRows(outs map[string]*CapFiltRun) {
	ann := int64(0)
	for _, img := range s.world.Annotated.Images {
		ann += int64(len(img.Captions))
	}
	count := func(run *CapFiltRun, src string) int64 {
		n := int64(0)
		for _, row := range run.rows {
			if _, ok := caption(row, src); ok || src == "" {
				n++
			}
		}
		return n
	}
	for i := range s.out.Rows {
		r := &s.out.Rows[i]
		switch r.Name {
		case RowBaseline:
			r.Data, r.Samples = "annotated + every web image with its web text", ann+int64(len(s.world.WebKeys()))
		case RowC:
			r.Data, r.Samples = "annotated + every web image with its web text or its nucleus caption", ann+count(outs["nucleus-all"], "")
		case RowF:
			r.Data, r.Samples = "annotated + the web images whose web text the filter kept", ann+count(outs["nucleus"], shards.SourceWeb)
		case RowCF:
			r.Data, r.Samples = "annotated + the web images with a kept web text or nucleus caption", ann+count(outs["nucleus"], "")
		case RowCFBeam:
			r.Data, r.Samples = "annotated + the web images with a kept web text or beam caption", ann+count(outs["beam"], "")
		}
	}
}
