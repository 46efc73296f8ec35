package blip

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/capfilt/capfilt/blip/tokenizer"
)

// ErrNoTokenizer says a model has no tokenizer beside it and none was named.
var ErrNoTokenizer = errors.New("no tokenizer (vocab.txt or tokenizer.json) beside the model")

// LoadModelTokenizer returns the tokenizer of a model: the one at path, or (path empty) the
// vocab.txt / tokenizer.json in the checkpoint's directory. Hub vocabularies lack [DEC]
// and [ENC]: their ids come from the model config, and the vocabulary must fit the model's.
// A vocabulary without [PAD] pads with the config's pad_token_id, one without [MASK] is
// fine (BLIP never uses it); TokenizerWarnings says which were missing.
func LoadModelTokenizer(path, modelPath string, cfg Config) (*tokenizer.Tokenizer, error) {
	if path == "" {
		dir := modelPath
		if fi, err := os.Stat(modelPath); err == nil && !fi.IsDir() {
			dir = filepath.Dir(modelPath)
		}
		for _, name := range []string{"vocab.txt", "tokenizer.json"} {
			if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
				path = dir
				break
			}
		}
		if path == "" {
			return nil, fmt.Errorf("model %s: %w", modelPath, ErrNoTokenizer)
		}
	}
	tok, err := tokenizer.Load(path)
	if err != nil {
		return nil, err
	}
	if err := tok.SetDecEncIDs(cfg.Text.BosID, cfg.Text.EncID); err != nil {
		return nil, fmt.Errorf("tokenizer %s: %w", path, err)
	}
	if tok.VocabSize() > cfg.Text.VocabSize {
		return nil, fmt.Errorf("tokenizer %s has %d tokens, more than the model's %d", path, tok.VocabSize(), cfg.Text.VocabSize)
	}
	if slices.Contains(tok.Missing(), "[PAD]") {
		if cfg.Text.PadID >= int64(cfg.Text.VocabSize) {
			return nil, fmt.Errorf("tokenizer %s has no [PAD], and the config's pad_token_id %d is outside the model's %d ids",
				path, cfg.Text.PadID, cfg.Text.VocabSize)
		}
		if err := tok.SetPadID(cfg.Text.PadID); err != nil {
			return nil, fmt.Errorf("tokenizer %s has no [PAD], and the config's pad_token_id cannot stand in: %w", path, err)
		}
	}
	return tok, nil
}

// TokenizerWarnings says which special tokens a model's tokenizer lacks and what stands
// in for them, for the load report.
func TokenizerWarnings(tok *tokenizer.Tokenizer) []string {
	var out []string
	for _, name := range tok.Missing() {
		switch name {
		case "[PAD]":
			out = append(out, fmt.Sprintf("the vocabulary has no [PAD]: padding with the config's pad_token_id %d", tok.PadID()))
		default:
			out = append(out, fmt.Sprintf("the vocabulary has no %s (nothing BLIP runs uses it)", name))
		}
	}
	return out
}
