package spec

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

// Condition is what a caption must reach to be kept: ITM ≥ MinITM and ITC ≥ MinITC, each
// bar only when it is set (not NaN). Its text form is "itm>=0.5", "itc>=0.3" or both
// joined by ','; JSON records it so, because JSON has no NaN.
type Condition struct {
	MinITM float64
	MinITC float64
}

// ITMOnly is the author's rule: keep when P(match) ≥ t.
func ITMOnly(t float64) Condition { return Condition{MinITM: t, MinITC: math.NaN()} }

func (c Condition) String() string {
	var parts []string
	if !math.IsNaN(c.MinITM) {
		parts = append(parts, "itm>="+num(c.MinITM))
	}
	if !math.IsNaN(c.MinITC) {
		parts = append(parts, "itc>="+num(c.MinITC))
	}
	return strings.Join(parts, ",")
}

// ParseCondition reads "itm>=0.5", "itc>=0.3" or both joined by ',' (or "&&"). A score
// the text does not name has no bar.
func ParseCondition(s string) (Condition, error) {
	c := Condition{MinITM: math.NaN(), MinITC: math.NaN()}
	seen := false
	for _, part := range strings.Split(strings.ReplaceAll(s, "&&", ","), ",") {
		part = strings.ReplaceAll(strings.TrimSpace(part), " ", "")
		if part == "" {
			continue
		}
		name, val, ok := strings.Cut(part, ">=")
		if !ok {
			return c, fmt.Errorf("condition %q: want itm>=X and/or itc>=Y", s)
		}
		v, err := strconv.ParseFloat(val, 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
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

// MarshalText writes the text form.
func (c Condition) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

// UnmarshalText reads the text form.
func (c *Condition) UnmarshalText(b []byte) error {
	v, err := ParseCondition(string(b))
	if err != nil {
		return err
	}
	*c = v
	return nil
}

// ITM bars are match probabilities, ITC bars cosines.
const (
	itmRange = "must be in [0, 1] (an ITM match probability)"
	itcRange = "must be in [-1, 1] (an ITC cosine)"
)

// CheckITM says why t cannot be an ITM bar ("" when it can); NaN means no bar.
func CheckITM(t float64) string {
	if math.IsNaN(t) || (t >= 0 && t <= 1) {
		return ""
	}
	return itmRange
}

// CheckITC says why t cannot be an ITC bar ("" when it can); NaN means no bar.
func CheckITC(t float64) string {
	if math.IsNaN(t) || (t >= -1 && t <= 1) {
		return ""
	}
	return itcRange
}

// validate names the bars out of range as setting (e.g. "keep-web-only-if").
func (c Condition) validate(setting string, ps *Problems) {
	if math.IsNaN(c.MinITM) && math.IsNaN(c.MinITC) {
		ps.add(setting, strconv.Quote(c.String()), "sets no bar (want itm>=X and/or itc>=Y)")
	}
	if r := CheckITM(c.MinITM); r != "" {
		ps.add(setting, strconv.Quote(c.String()), "itm "+r)
	}
	if r := CheckITC(c.MinITC); r != "" {
		ps.add(setting, strconv.Quote(c.String()), "itc "+r)
	}
}

// Validate names the bars out of range (a Problems error), nil when there is none.
func (c Condition) Validate() error {
	var ps Problems
	c.validate("condition", &ps)
	return ps.err()
}

// AcceptRule decides which captions an image keeps.
type AcceptRule struct {
	Web       Condition `json:"web"`
	Synthetic Condition `json:"synthetic"`
	// FilterHuman filters human-annotated captions too (with the web condition); by
	// default they bypass the filter.
	FilterHuman bool `json:"filter_human,omitempty"`
}

// DefaultITMThreshold is the BLIP author's bar on the ITM match probability.
const DefaultITMThreshold = 0.5

// DefaultRule is CapFilt's: keep a web or synthetic caption when P(match) ≥ 0.5, keep
// human-annotated ones unfiltered.
func DefaultRule() AcceptRule {
	return AcceptRule{Web: ITMOnly(DefaultITMThreshold), Synthetic: ITMOnly(DefaultITMThreshold)}
}

// Validate names the conditions out of range (a Problems error), nil when there is none.
func (r AcceptRule) Validate() error {
	var ps Problems
	r.Web.validate("keep-web-only-if", &ps)
	r.Synthetic.validate("keep-synthetic-only-if", &ps)
	return ps.err()
}

// ErrNaN is returned for a score that is not a number: a broken model, never a decision.
var ErrNaN = errors.New("score is NaN")

// Keep says whether a caption from src with ITM probability itm and ITC cosine itc is
// kept.
func (r AcceptRule) Keep(src Source, itm, itc float64) (bool, error) {
	if math.IsNaN(itm) || math.IsNaN(itc) {
		return false, fmt.Errorf("%w (itm %v, itc %v)", ErrNaN, itm, itc)
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
		return false, fmt.Errorf("unknown caption source %q", src)
	}
	if !math.IsNaN(c.MinITM) && itm < c.MinITM {
		return false, nil
	}
	if !math.IsNaN(c.MinITC) && itc < c.MinITC {
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
