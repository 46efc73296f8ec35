package main

import (
	"math"

	"github.com/spf13/cobra"

	"github.com/capfilt/capfilt/filter"
)

// addRuleFlags adds the CapFilt accept rule's settings.
func addRuleFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.Float64("itm-threshold", 0.5, "keep a caption when its ITM match probability is at least this")
	f.Float64("itc-threshold", math.NaN(), "also require this ITC cosine (NaN: no ITC bar)")
	f.String("keep-web-only-if", "", `condition for web captions instead, e.g. "itm>=0.6,itc>=0.3"`)
	f.String("keep-synthetic-only-if", "", `condition for synthetic captions instead, e.g. "itm>=0.5"`)
	f.Bool("filter-human", false, "filter human-annotated captions too (by default they are kept, as in the paper)")
}

func (a *app) acceptRule() (filter.AcceptRule, error) {
	base := filter.Condition{MinITM: a.v.GetFloat64("itm-threshold"), MinITC: a.v.GetFloat64("itc-threshold")}
	r := filter.AcceptRule{Web: base, Synthetic: base, FilterHuman: a.v.GetBool("filter-human")}
	for _, o := range []struct {
		key string
		dst *filter.Condition
	}{{"keep-web-only-if", &r.Web}, {"keep-synthetic-only-if", &r.Synthetic}} {
		if s := a.v.GetString(o.key); s != "" {
			c, err := filter.ParseCondition(s)
			if err != nil {
				return r, usagef("%s: %v", o.key, err)
			}
			*o.dst = c
		}
	}
	return r, nil
}
