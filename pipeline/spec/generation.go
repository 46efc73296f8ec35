package spec

import (
	"fmt"
	"strconv"
)

// Mode is the decoding strategy of the captioner.
type Mode string

const (
	// Nucleus samples each token from the top-p nucleus (CapFilt's synthetic captions).
	Nucleus Mode = "nucleus"
	// Beam keeps the best NumBeams hypotheses (BLIP's COCO/NoCaps evaluation).
	Beam Mode = "beam"
	// Greedy takes the most likely token at every step.
	Greedy Mode = "greedy"
)

// ParseMode reads a mode name.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case Nucleus, Beam, Greedy:
		return m, nil
	}
	return "", fmt.Errorf("mode %q: want nucleus, beam or greedy", s)
}

// UnmarshalText accepts only the three modes.
func (m *Mode) UnmarshalText(b []byte) error {
	v, err := ParseMode(string(b))
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// DefaultPrompt is BLIP's captioning prompt; it is fed to the decoder and stripped from
// the text.
const DefaultPrompt = "a picture of "

// Generation is every knob of caption generation, with transformers-4.15 semantics as
// BLIP used them: MaxLength and MinLength count the whole sequence, the prompt's tokens
// and the leading [DEC] included.
type Generation struct {
	Mode              Mode    `json:"mode"`
	TopP              float64 `json:"top_p"`
	TopK              int     `json:"top_k"` // 0 disables the top-k filter
	Temperature       float64 `json:"temperature"`
	RepetitionPenalty float64 `json:"repetition_penalty"`
	MaxLength         int     `json:"max_length"`
	MinLength         int     `json:"min_length"`
	NumBeams          int     `json:"num_beams"`
	// Samples is how many nucleus captions to draw per image.
	Samples int    `json:"samples"`
	Prompt  string `json:"prompt"`
	// Seed and the image key seed each image's draws, so an image gets the same captions
	// in whatever batch it lands.
	Seed uint64 `json:"seed"`
}

// NucleusDefaults are CapFilt's settings: top-p 0.9 after transformers' default top-k 50,
// temperature 1, the sample path's hard-coded repetition penalty 1.1, lengths 30/10.
func NucleusDefaults() Generation {
	return Generation{Mode: Nucleus, TopP: 0.9, TopK: 50, Temperature: 1, RepetitionPenalty: 1.1,
		MaxLength: 30, MinLength: 10, NumBeams: 1, Samples: 1, Prompt: DefaultPrompt}
}

// BeamDefaults are BLIP's evaluation settings: 3 beams, lengths 20/5, no penalty.
func BeamDefaults() Generation {
	return Generation{Mode: Beam, TopP: 1, TopK: 0, Temperature: 1, RepetitionPenalty: 1,
		MaxLength: 20, MinLength: 5, NumBeams: 3, Samples: 1, Prompt: DefaultPrompt}
}

// GreedyDefaults are the HF convert script's check: greedy, max length 20.
func GreedyDefaults() Generation {
	return Generation{Mode: Greedy, TopP: 1, TopK: 0, Temperature: 1, RepetitionPenalty: 1,
		MaxLength: 20, MinLength: 0, NumBeams: 1, Samples: 1, Prompt: DefaultPrompt}
}

// GenerationDefaults returns the defaults of a mode.
func GenerationDefaults(m Mode) (Generation, error) {
	switch m {
	case Nucleus:
		return NucleusDefaults(), nil
	case Beam:
		return BeamDefaults(), nil
	case Greedy:
		return GreedyDefaults(), nil
	}
	_, err := ParseMode(string(m))
	return Generation{}, err
}

// Validate names every setting out of range (a Problems error), nil when there is none.
func (g Generation) Validate() error {
	var ps Problems
	if _, err := ParseMode(string(g.Mode)); err != nil {
		ps.add("mode", strconv.Quote(string(g.Mode)), "want nucleus, beam or greedy")
	}
	if g.MaxLength < 2 {
		ps.add("max-length", strconv.Itoa(g.MaxLength), "must be at least 2")
	}
	if g.MinLength < 0 || g.MinLength > g.MaxLength {
		ps.add("min-length", strconv.Itoa(g.MinLength), fmt.Sprintf("must be between 0 and max-length %d", g.MaxLength))
	}
	if !(g.RepetitionPenalty > 0) {
		ps.add("repetition-penalty", num(g.RepetitionPenalty), "must be > 0")
	}
	if g.NumBeams < 1 {
		ps.add("num-beams", strconv.Itoa(g.NumBeams), "must be at least 1")
	}
	if g.Mode == Nucleus {
		if !(g.TopP > 0 && g.TopP <= 1) {
			ps.add("top-p", num(g.TopP), "must be in (0, 1]")
		}
		if g.TopK < 0 {
			ps.add("top-k", strconv.Itoa(g.TopK), "must be 0 (off) or more")
		}
		if !(g.Temperature > 0) {
			ps.add("temperature", num(g.Temperature), "must be > 0")
		}
		if g.Samples < 1 {
			ps.add("samples", strconv.Itoa(g.Samples), "must be at least 1")
		}
	}
	return ps.err()
}
