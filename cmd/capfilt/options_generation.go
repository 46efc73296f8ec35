package main

import (
	"github.com/spf13/pflag"

	"github.com/capfilt/capfilt/pipeline/spec"
)

// generationOptions are the captioner's settings (spec.Generation). The four
// length/penalty/beam settings default to "the mode's own" (0, -1, 0, 0); the sampler's
// take CapFilt's nucleus defaults.
type generationOptions struct {
	Mode              string
	TopP              float64
	TopK              int
	Temperature       float64
	RepetitionPenalty float64
	MaxLength         int
	MinLength         int
	NumBeams          int
	Samples           int
	Prompt            string
	Seed              uint64
}

func (o *generationOptions) AddFlags(f *pflag.FlagSet) {
	d := spec.NucleusDefaults()
	f.StringVar(&o.Mode, "mode", string(d.Mode), "decoding: nucleus, beam or greedy")
	f.Float64Var(&o.TopP, "top-p", d.TopP, "nucleus: keep tokens until this much probability is covered")
	f.IntVar(&o.TopK, "top-k", d.TopK, "nucleus: keep at most the k most likely tokens first (0: off)")
	f.Float64Var(&o.Temperature, "temperature", d.Temperature, "nucleus: divide logits by this")
	f.IntVar(&o.Samples, "samples", d.Samples, "nucleus: synthetic captions per image")
	f.Uint64Var(&o.Seed, "seed", d.Seed, "seed of the nucleus sampler, with each image's key: a retried shard gets the same captions")
	o.addDecodingFlags(f)
}

// addDecodingFlags declares the settings every mode has (eval caption decodes with beam
// search only and takes just these).
func (o *generationOptions) addDecodingFlags(f *pflag.FlagSet) {
	f.StringVar(&o.Prompt, "prompt", spec.NucleusDefaults().Prompt, "text the decoder starts from, stripped from the output")
	f.IntVar(&o.MaxLength, "max-length", 0, "longest sequence, [DEC] and prompt tokens included (0: the mode's default: nucleus 30, beam 20, greedy 20)")
	f.IntVar(&o.MinLength, "min-length", -1, "shortest sequence before [SEP] is allowed, prompt included (-1: the mode's default: nucleus 10, beam 5, greedy 0)")
	f.Float64Var(&o.RepetitionPenalty, "repetition-penalty", 0, "repetition penalty (0: the mode's default: nucleus 1.1, else 1.0)")
	f.IntVar(&o.NumBeams, "num-beams", 0, "beams for beam search (0: the mode's default: 3 for beam, else 1)")
}

// mode parses --mode.
func (o *generationOptions) mode(a *app) (spec.Mode, error) {
	m, err := spec.ParseMode(o.Mode)
	if err != nil {
		return m, a.bad("mode", quote(o.Mode), "want nucleus, beam or greedy")
	}
	return m, nil
}

// resolve applies the settings over mode's defaults and validates the result.
func (o *generationOptions) resolve(a *app, mode spec.Mode) (spec.Generation, error) {
	g, err := spec.GenerationDefaults(mode)
	if err != nil {
		return g, a.bad("mode", quote(string(mode)), "want nucleus, beam or greedy")
	}
	if o.MaxLength != 0 {
		g.MaxLength = o.MaxLength
	}
	if o.MinLength != -1 {
		g.MinLength = o.MinLength
	}
	if o.RepetitionPenalty != 0 {
		g.RepetitionPenalty = o.RepetitionPenalty
	}
	if o.NumBeams != 0 {
		g.NumBeams = o.NumBeams
	}
	given := func(name string) bool { return a.from(name).kind != fromDefault }
	if given("top-p") {
		g.TopP = o.TopP
	}
	if given("top-k") {
		g.TopK = o.TopK
	}
	if given("temperature") {
		g.Temperature = o.Temperature
	}
	if given("samples") {
		g.Samples = o.Samples
	}
	if given("prompt") {
		g.Prompt = o.Prompt
	}
	g.Seed = o.Seed
	return g, a.badSettings(g.Validate())
}

// settings is resolve at the mode --mode names.
func (o *generationOptions) settings(a *app) (spec.Generation, error) {
	m, err := o.mode(a)
	if err != nil {
		return spec.Generation{}, err
	}
	return o.resolve(a, m)
}
