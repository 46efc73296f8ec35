package main

import (
	"github.com/spf13/pflag"

	"github.com/capfilt/capfilt/filter"
	"github.com/capfilt/capfilt/pipeline/spec"
)

// scoringOptions are how the filter computes its scores (score, run, submit).
type scoringOptions struct {
	ITMFirstToken string
}

func (o *scoringOptions) AddFlags(f *pflag.FlagSet) {
	f.StringVar(&o.ITMFirstToken, "itm-first-token", string(spec.ITMFirstEnc),
		"first token of the ITM text: enc (as BLIP was trained) or cls (as HF's BlipForImageTextRetrieval, to match its scores)")
}

func (o *scoringOptions) resolve(a *app) (spec.ITMFirstToken, error) {
	t, err := spec.ParseITMFirstToken(o.ITMFirstToken)
	if err != nil {
		return "", a.bad("itm-first-token", quote(o.ITMFirstToken), "want enc or cls")
	}
	return t, nil
}

// filterOptions are the filter's options for the first token t.
func filterOptions(t spec.ITMFirstToken) filter.Options {
	o := filter.DefaultOptions()
	o.ITMFirstToken = t
	return o
}
