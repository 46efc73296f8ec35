package main

import (
	"github.com/spf13/cobra"

	"github.com/capfilt/capfilt/captioner"
)

// addGenerationFlags adds the generation knobs; 0 means "the mode's default".
func addGenerationFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.Int("max-length", 0, "longest sequence, [DEC] and prompt tokens included (0: the mode's default: nucleus 30, beam 20, greedy 20)")
	f.Int("min-length", -1, "shortest sequence before [SEP] is allowed, prompt included (-1: the mode's default: nucleus 10, beam 5, greedy 0)")
	f.Float64("repetition-penalty", 0, "repetition penalty (0: the mode's default: nucleus 1.1, else 1.0)")
	f.Int("num-beams", 0, "beams for beam search (0: 3)")
}

// generationSettings applies the flags over a mode's defaults.
func (a *app) generationSettings(mode captioner.Mode) (captioner.Settings, error) {
	st, err := captioner.Defaults(mode)
	if err != nil {
		return st, usagef("%v", err)
	}
	if v := a.v.GetInt("max-length"); v != 0 {
		st.MaxLength = v
	}
	if v := a.v.GetInt("min-length"); v >= 0 {
		st.MinLength = v
	}
	if v := a.v.GetFloat64("repetition-penalty"); v != 0 {
		st.RepetitionPenalty = v
	}
	if v := a.v.GetInt("num-beams"); v != 0 {
		st.NumBeams = v
	}
	if a.v.IsSet("top-p") {
		st.TopP = a.v.GetFloat64("top-p")
	}
	if a.v.IsSet("top-k") {
		st.TopK = a.v.GetInt("top-k")
	}
	if a.v.IsSet("temperature") {
		st.Temperature = a.v.GetFloat64("temperature")
	}
	if a.v.IsSet("samples") {
		st.Samples = a.v.GetInt("samples")
	}
	if a.v.IsSet("prompt") {
		st.Prompt = a.v.GetString("prompt")
	}
	if a.v.IsSet("seed") {
		st.Seed = uint64(a.v.GetInt64("seed"))
	}
	if err := st.Validate(); err != nil {
		return st, usagef("%v", err)
	}
	return st, nil
}
