package filter

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Source is where a caption came from.
type Source string

const (
	Web       Source = "web"
	Synthetic Source = "synthetic"
	// Human marks human-annotated captions (COCO, VG): the paper keeps them unfiltered.
	Human Source = "human"
)

// Score is what the filter measures of one (image, caption) pair.
type Score struct {
	// ITM is the match probability: softmax of the ITM head's logits on [ENC], class 1.
	ITM float32 `json:"itm"`
	// ITC is the cosine of the normalised projected [CLS] features (no temperature).
	ITC float32 `json:"itc"`
}

// Condition is what a caption must reach to be kept: ITM ≥ MinITM and, when MinITC is
// set (not NaN), ITC ≥ MinITC.
type Condition struct {
	MinITM float64
	MinITC float64
}

// ITMOnly is the author's rule: keep when P(match) ≥ t.
func ITMOnly(t float64) Condition { return Condition{MinITM: t, MinITC: math.NaN()} }

func (c Condition) String() string {
	s := "itm>=" + strconv.FormatFloat(c.MinITM, 'g', -1, 64)
	if !math.IsNaN(c.MinITC) {
		s += ",itc>=" + strconv.FormatFloat(c.MinITC, 'g', -1, 64)
	}
	return s
}

// ParseCondition reads "itm>=0.5", "itc>=0.3" or both joined by ',' (or "&&").
func ParseCondition(s string) (Condition, error) {
	c := Condition{MinITM: math.Inf(-1), MinITC: math.NaN()}
	s = strings.ReplaceAll(s, "&&", ",")
	seen := false
	for _, part := range strings.Split(s, ",") {
		part = strings.ReplaceAll(strings.TrimSpace(part), " ", "")
		if part == "" {
			continue
		}
		name, val, ok := strings.Cut(part, ">=")
		if !ok {
			return c, fmt.Errorf("condition %q: want itm>=X and/or itc>=Y", s)
		}
		v, err := strconv.ParseFloat(val, 64)
		if err != nil || math.IsNaN(v) {
			return c, fmt.Errorf("condition %q: %q is not a number", s, val)
		}
		switch name {
		case "itm":
			c.MinITM = v
		case "itc":
			c.MinITC = v
		default:
			return c, fmt.Errorf("condition %q: unknown score %q (want itm or itc)", s, name)
		}
		seen = true
	}
	if !seen {
		return c, fmt.Errorf("condition %q is empty", s)
	}
	return c, nil
}

// AcceptRule decides which captions an image keeps.
type AcceptRule struct {
	Web, Synthetic Condition
	// FilterHuman filters human-annotated captions too; by default they bypass the filter.
	FilterHuman bool
}

// DefaultRule is CapFilt's: keep a web or synthetic caption when P(match) ≥ 0.5, keep
// human-annotated ones unfiltered.
func DefaultRule() AcceptRule { return AcceptRule{Web: ITMOnly(0.5), Synthetic: ITMOnly(0.5)} }

// ErrNaN is returned for a score that is not a number: a broken model, never a decision.
var ErrNaN = errors.New("filter: score is NaN")

// Accept says whether a caption from src with score sc is kept.
func (r AcceptRule) Accept(src Source, sc Score) (bool, error) {
	if math.IsNaN(float64(sc.ITM)) || math.IsNaN(float64(sc.ITC)) {
		return false, fmt.Errorf("%w (itm %v, itc %v)", ErrNaN, sc.ITM, sc.ITC)
	}
	var c Condition
	switch src {
	case Web:
		c = r.Web
	case Synthetic:
		c = r.Synthetic
	case Human:
		if !r.FilterHuman {
			return true, nil
		}
		c = r.Web
	default:
		return false, fmt.Errorf("filter: unknown caption source %q", src)
	}
	if float64(sc.ITM) < c.MinITM {
		return false, nil
	}
	if !math.IsNaN(c.MinITC) && float64(sc.ITC) < c.MinITC {
		return false, nil
	}
	return true, nil
}

// String records the rule in output metadata, e.g. "web: itm>=0.5; synthetic: itm>=0.5; human: keep".
func (r AcceptRule) String() string {
	h := "keep"
	if r.FilterHuman {
		h = "as web"
	}
	return fmt.Sprintf("web: %v; synthetic: %v; human: %s", r.Web, r.Synthetic, h)
}
