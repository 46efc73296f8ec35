package blip

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/capfilt/capfilt/blip/tokenizer"
)

// ErrNoTokenizer says a model has no tokenizer beside it and none was named.
var ErrNoTokenizer = errors.New("no tokenizer (vocab.txt or tokenizer.json) beside the model")

// LoadModelTokenizer returns the tokenizer of a model: the one at path, or (path empty) the
// vocab.txt / tokenizer.json in the checkpoint's directory. Hub vocabularies lack [DEC]
// and [ENC]: their ids come from the model config, and the vocabulary must fit the model's.
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
	return tok, nil
}
