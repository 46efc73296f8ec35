package captioner

import (
	"fmt"
	"strings"
)

// Mode is the decoding strategy.
type Mode string

const (
	// Nucleus samples each token from the top-p nucleus (CapFilt's synthetic captions).
	Nucleus Mode = "nucleus"
	// Beam keeps the best NumBeams hypotheses (BLIP's COCO/NoCaps evaluation).
	Beam Mode = "beam"
	// Greedy takes the most likely token at every step.
	Greedy Mode = "greedy"
)

// DefaultPrompt is BLIP's captioning prompt; it is fed to the decoder and stripped from
// the text.
const DefaultPrompt = "a picture of "

// Settings are every knob of generation, with transformers-4.15 semantics as BLIP used
// them: MaxLength and MinLength count the whole sequence, the prompt's tokens and the
// leading [DEC] included.
type Settings struct {
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
func NucleusDefaults() Settings {
	return Settings{Mode: Nucleus, TopP: 0.9, TopK: 50, Temperature: 1, RepetitionPenalty: 1.1,
		MaxLength: 30, MinLength: 10, NumBeams: 1, Samples: 1, Prompt: DefaultPrompt}
}

// BeamDefaults are BLIP's evaluation settings: 3 beams, lengths 20/5, no penalty.
func BeamDefaults() Settings {
	return Settings{Mode: Beam, TopP: 1, TopK: 0, Temperature: 1, RepetitionPenalty: 1,
		MaxLength: 20, MinLength: 5, NumBeams: 3, Samples: 1, Prompt: DefaultPrompt}
}

// GreedyDefaults are the HF convert script's check: greedy, max length 20.
func GreedyDefaults() Settings {
	return Settings{Mode: Greedy, TopP: 1, TopK: 0, Temperature: 1, RepetitionPenalty: 1,
		MaxLength: 20, MinLength: 0, NumBeams: 1, Samples: 1, Prompt: DefaultPrompt}
}

// Defaults returns the defaults of a mode.
func Defaults(m Mode) (Settings, error) {
	switch m {
	case Nucleus:
		return NucleusDefaults(), nil
	case Beam:
		return BeamDefaults(), nil
	case Greedy:
		return GreedyDefaults(), nil
	}
	return Settings{}, fmt.Errorf("unknown caption mode %q (want nucleus, beam or greedy)", m)
}

// Validate reports the first setting out of range, by name.
func (s Settings) Validate() error {
	var problems []string
	switch s.Mode {
	case Nucleus, Beam, Greedy:
	default:
		problems = append(problems, fmt.Sprintf("mode %q: want nucleus, beam or greedy", s.Mode))
	}
	if s.MaxLength < 2 {
		problems = append(problems, fmt.Sprintf("max-length %d: must be at least 2", s.MaxLength))
	}
	if s.MinLength < 0 || s.MinLength > s.MaxLength {
		problems = append(problems, fmt.Sprintf("min-length %d: must be between 0 and max-length %d", s.MinLength, s.MaxLength))
	}
	if s.RepetitionPenalty <= 0 {
		problems = append(problems, fmt.Sprintf("repetition-penalty %v: must be > 0", s.RepetitionPenalty))
	}
	if s.Mode == Nucleus {
		if s.TopP <= 0 || s.TopP > 1 {
			problems = append(problems, fmt.Sprintf("top-p %v: must be in (0, 1]", s.TopP))
		}
		if s.TopK < 0 {
			problems = append(problems, fmt.Sprintf("top-k %d: must be >= 0", s.TopK))
		}
		if s.Temperature <= 0 {
			problems = append(problems, fmt.Sprintf("temperature %v: must be > 0", s.Temperature))
		}
		if s.Samples < 1 {
			problems = append(problems, fmt.Sprintf("samples %d: must be >= 1", s.Samples))
		}
	}
	if s.Mode == Beam && s.NumBeams < 1 {
		problems = append(problems, fmt.Sprintf("num-beams %d: must be >= 1", s.NumBeams))
	}
	if len(problems) > 0 {
		return fmt.Errorf("caption settings: %s", strings.Join(problems, "; "))
	}
	return nil
}

// rowsPerImage is how many sequences are decoded together for one image.
func (s Settings) rowsPerImage() int {
	switch s.Mode {
	case Beam:
		return s.NumBeams
	case Nucleus:
		return s.Samples
	}
	return 1
}
