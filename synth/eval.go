package synth

import (
	"fmt"
	"slices"
	"strings"
)

// FilterReport compares a filter's decisions on the web captions with the injected
// noise. A rejected noisy caption is a true positive, a rejected true (full or
// incomplete) caption a false positive, a kept noisy caption a false negative.
type FilterReport struct {
	// ByKind counts, for each caption kind, the web captions and how many were rejected.
	ByKind map[CaptionKind]KindDecisions `json:"by_kind"`
	// WrongByAttribute splits the wrong-attribute captions by what was changed (colour,
	// size, shape, cell, relation, background): which attributes the filter looks at.
	WrongByAttribute map[string]KindDecisions `json:"wrong_by_attribute,omitempty"`
}

// WrongAttributes are the attributes the wrong-attribute noise changes, in the order
// reports list them.
var WrongAttributes = []string{"colour", "size", "shape", "cell", "relation", "background"}

// Add adds o's decisions to r's (a report over several worlds).
func (r *FilterReport) Add(o FilterReport) {
	add := func(sum, d KindDecisions) KindDecisions {
		return KindDecisions{Total: sum.Total + d.Total, Rejected: sum.Rejected + d.Rejected}
	}
	if r.ByKind == nil {
		r.ByKind = map[CaptionKind]KindDecisions{}
	}
	for k, d := range o.ByKind {
		r.ByKind[k] = add(r.ByKind[k], d)
	}
	if len(o.WrongByAttribute) > 0 && r.WrongByAttribute == nil {
		r.WrongByAttribute = map[string]KindDecisions{}
	}
	for a, d := range o.WrongByAttribute {
		r.WrongByAttribute[a] = add(r.WrongByAttribute[a], d)
	}
}

// KindDecisions is what the filter did with the captions of one kind.
type KindDecisions struct {
	Total    int `json:"total"`
	Rejected int `json:"rejected"`
}

// Share is the share of the captions the filter rejected.
func (d KindDecisions) Share() float64 { return ratio(d.Rejected, d.Total) }

// AttributeDecisions is what the filter did with the wrong-attribute captions that
// changed Attribute.
type AttributeDecisions struct {
	Attribute string
	KindDecisions
}

// WrongRows are the wrong-attribute decisions by what was changed, in the order of
// WrongAttributes, leaving out attributes no caption changed.
func (r FilterReport) WrongRows() []AttributeDecisions {
	var rows []AttributeDecisions
	for _, a := range WrongAttributes {
		if d := r.WrongByAttribute[a]; d.Total > 0 {
			rows = append(rows, AttributeDecisions{a, d})
		}
	}
	return rows
}

func (r FilterReport) sum(noisy bool) (total, rejected int) {
	for k, d := range r.ByKind {
		if k.Noisy() == noisy {
			total += d.Total
			rejected += d.Rejected
		}
	}
	return total, rejected
}

// Precision is the share of rejected captions that were noise: TP / (TP + FP).
func (r FilterReport) Precision() float64 {
	_, tp := r.sum(true)
	_, fp := r.sum(false)
	return ratio(tp, tp+fp)
}

// Recall is the share of the noise that was rejected: TP / (TP + FN).
func (r FilterReport) Recall() float64 {
	noise, tp := r.sum(true)
	return ratio(tp, noise)
}

// KindRecall is the share of kind k's captions that were rejected: for a noise kind
// the recall on that kind, for full and incomplete captions the false-rejection rate.
func (r FilterReport) KindRecall(k CaptionKind) float64 { return r.ByKind[k].Share() }

// KindPrecision is the precision the filter would have if k were the only noise: the
// rejected captions of kind k over those plus every rejected true caption. It says
// whether catching that kind costs good captions; the overall Precision weighs the
// kinds by how common they are.
func (r FilterReport) KindPrecision(k CaptionKind) float64 {
	_, fp := r.sum(false)
	tp := r.ByKind[k].Rejected
	return ratio(tp, tp+fp)
}

// KeptNoise is the share of kept web captions that are noise: what noise is left after
// the filter.
func (r FilterReport) KeptNoise() float64 {
	noise, tp := r.sum(true)
	clean, fp := r.sum(false)
	return ratio(noise-tp, noise-tp+clean-fp)
}

// String is the report as one line per kind.
func (r FilterReport) String() string {
	s := fmt.Sprintf("precision %.3f recall %.3f", r.Precision(), r.Recall())
	for _, k := range CaptionKinds {
		d := r.ByKind[k]
		s += fmt.Sprintf("\n  %-16s %5d rejected of %5d (%.3f)", k, d.Rejected, d.Total, r.KindRecall(k))
	}
	return s
}

// EvaluateFilter scores a filter's decisions on the web captions: kept holds the keys
// whose web caption the filter kept (a key mapped to false, or absent, was rejected).
// A key the world does not know is an error.
func (w *World) EvaluateFilter(kept map[string]bool) (FilterReport, error) {
	for key := range kept {
		if _, ok := w.web[key]; !ok {
			return FilterReport{}, fmt.Errorf("evaluate filter: key %q is not a web sample of the world in %s", key, w.Dir)
		}
	}
	r := FilterReport{ByKind: map[CaptionKind]KindDecisions{}, WrongByAttribute: map[string]KindDecisions{}}
	for _, k := range CaptionKinds {
		r.ByKind[k] = KindDecisions{}
	}
	count := func(d KindDecisions, rejected bool) KindDecisions {
		d.Total++
		if rejected {
			d.Rejected++
		}
		return d
	}
	for _, key := range w.webKeys {
		t := w.web[key]
		r.ByKind[t.Kind] = count(r.ByKind[t.Kind], !kept[key])
		if t.Kind == KindWrongAttribute {
			attr, _, _ := strings.Cut(t.Detail, ":")
			if !slices.Contains(WrongAttributes, attr) {
				return FilterReport{}, fmt.Errorf("evaluate filter: web sample %q: wrong attribute %q is none of %v", key, t.Detail, WrongAttributes)
			}
			r.WrongByAttribute[attr] = count(r.WrongByAttribute[attr], !kept[key])
		}
	}
	return r, nil
}

// ScoreWebCaptions scores captions of web images (by key), synthetic ones say, against
// the pictures; the sum is the set's micro-averaged AttributeScore.
func (w *World) ScoreWebCaptions(captions map[string]string) (AttributeScore, error) {
	var s AttributeScore
	for _, key := range sortedKeys(captions) {
		t, ok := w.web[key]
		if !ok {
			return s, fmt.Errorf("score captions: key %q is not a web sample of the world in %s", key, w.Dir)
		}
		s.Add(AttributeAccuracy(t.Scene, captions[key]))
	}
	return s, nil
}

// Score scores captions of the set's images (by image_id) against their pictures.
func (s ImageSet) Score(captions map[int]string) (AttributeScore, error) {
	var total AttributeScore
	for id, c := range captions {
		img, ok := s.ByID(id)
		if !ok {
			return total, fmt.Errorf("score captions: image_id %d is not in %s", id, s.Annotations)
		}
		total.Add(AttributeAccuracy(img.Truth.Scene, c))
	}
	return total, nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
