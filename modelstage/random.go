package modelstage

import (
	"github.com/capfilt/capfilt/blip"
	"github.com/capfilt/capfilt/blip/tokenizer"
)

// WriteRandomModel writes a BLIP model with every part (so one checkpoint serves as both
// captioner and filter) and deterministic random weights, with its tokenizer, as an HF
// directory; it returns the parameter count. Every machine gets the same model from the
// same seed: what a pipeline can be tried and timed with where no checkpoint can be
// downloaded.
func WriteRandomModel(dir string, cfg blip.Config, tok *tokenizer.Tokenizer, seed uint64) (int64, error) {
	m, err := blip.New(cfg, blip.AllParts())
	if err != nil {
		return 0, err
	}
	defer m.Close()
	if err := m.InitDeterministic(seed); err != nil {
		return 0, err
	}
	if err := m.SaveHF(dir, tok); err != nil {
		return 0, err
	}
	var params int64
	for _, n := range m.NumParams() {
		params += n
	}
	return params, nil
}
