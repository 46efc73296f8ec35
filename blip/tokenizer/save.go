package tokenizer

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// WriteVocab writes the vocabulary as vocab.txt (one token per line, id = line number),
// which LoadTokenizer reads back; [DEC] and [ENC] live in the model config, not here.
func (t *Tokenizer) WriteVocab(dir string) error {
	path := filepath.Join(dir, "vocab.txt")
	if err := os.WriteFile(path, []byte(strings.Join(t.tokens, "\n")+"\n"), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
