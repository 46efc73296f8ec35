package main

import (
	"math"
	"strconv"

	"github.com/spf13/pflag"

	"github.com/capfilt/capfilt/pipeline/spec"
)

// ruleOptions are the CapFilt accept rule's settings (spec.AcceptRule).
type ruleOptions struct {
	ITM, ITC           float64
	WebIf, SyntheticIf string
	FilterHuman        bool
}

func (o *ruleOptions) AddFlags(f *pflag.FlagSet) {
	f.Float64Var(&o.ITM, "itm-threshold", spec.DefaultITMThreshold, "keep a caption when its ITM match probability is at least this (0 to 1)")
	f.Float64Var(&o.ITC, "itc-threshold", math.NaN(), "also require this ITC cosine (-1 to 1; NaN: no ITC bar)")
	f.StringVar(&o.WebIf, "keep-web-only-if", "", `condition for web captions instead, e.g. "itm>=0.6,itc>=0.3"`)
	f.StringVar(&o.SyntheticIf, "keep-synthetic-only-if", "", `condition for synthetic captions instead, e.g. "itm>=0.5"`)
	f.BoolVar(&o.FilterHuman, "filter-human", false, "filter human-annotated captions too (by default they are kept, as in the paper)")
}

func (o *ruleOptions) resolve(a *app) (spec.AcceptRule, error) {
	num := func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
	if r := spec.CheckITM(o.ITM); r != "" || math.IsNaN(o.ITM) {
		if r == "" {
			r = "must be a number (an ITM match probability)"
		}
		return spec.AcceptRule{}, a.bad("itm-threshold", num(o.ITM), r)
	}
	if r := spec.CheckITC(o.ITC); r != "" {
		return spec.AcceptRule{}, a.bad("itc-threshold", num(o.ITC), r)
	}
	base := spec.Condition{MinITM: o.ITM, MinITC: o.ITC}
	r := spec.AcceptRule{Web: base, Synthetic: base, FilterHuman: o.FilterHuman}
	for _, c := range []struct {
		name string
		text string
		dst  *spec.Condition
	}{{"keep-web-only-if", o.WebIf, &r.Web}, {"keep-synthetic-only-if", o.SyntheticIf, &r.Synthetic}} {
		if c.text == "" {
			continue
		}
		cond, err := spec.ParseCondition(c.text)
		if err != nil {
			return r, a.bad(c.name, quote(c.text), err.Error())
		}
		*c.dst = cond
	}
	return r, a.badSettings(r.Validate())
}
