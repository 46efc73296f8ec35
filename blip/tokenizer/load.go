package tokenizer

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// LoadTokenizer reads a BERT WordPiece vocabulary from path: a vocab.txt (one token
// per line, id = line number), a transformers tokenizer.json, or a directory holding
// either. In a directory vocab.txt wins, since BLIP ran transformers' slow
// tokenizer, which reads it; its tokenizer_config.json (do_lower_case,
// strip_accents, tokenize_chinese_chars) and added_tokens.json ([DEC]/[ENC] ids)
// are honoured when present. A model config's bos_token_id/enc_token_id still
// override [DEC]/[ENC] through SetDecEncIDs.
func Load(path string) (*Tokenizer, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("load tokenizer: %w", err)
	}
	if !info.IsDir() {
		if strings.HasSuffix(path, ".json") {
			return loadTokenizerJSON(path)
		}
		return loadVocabTxt(path, "")
	}
	vocab := filepath.Join(path, "vocab.txt")
	if _, err := os.Stat(vocab); err == nil {
		return loadVocabTxt(vocab, path)
	}
	tj := filepath.Join(path, "tokenizer.json")
	if _, err := os.Stat(tj); err == nil {
		return loadTokenizerJSON(tj)
	}
	return nil, fmt.Errorf("load tokenizer: %s holds neither vocab.txt nor tokenizer.json", path)
}

// loadVocabTxt reads vocab.txt and, when dir is set, the transformers side files
// next to it.
func loadVocabTxt(path, dir string) (*Tokenizer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load tokenizer: %w", err)
	}
	text := strings.ReplaceAll(string(data), "\r\n", "\n")
	text = strings.TrimSuffix(text, "\n")
	norm := BertUncased
	if dir != "" {
		if norm, err = readTokenizerConfig(filepath.Join(dir, "tokenizer_config.json")); err != nil {
			return nil, err
		}
	}
	t, err := New(strings.Split(text, "\n"), norm)
	if err != nil {
		return nil, fmt.Errorf("load tokenizer %s: %w", path, err)
	}
	if dir != "" {
		if err := applyAddedTokens(t, filepath.Join(dir, "added_tokens.json")); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// readTokenizerConfig reads the normalisation flags of a transformers
// tokenizer_config.json; a missing file means bert-base-uncased's defaults.
func readTokenizerConfig(path string) (TextNormalization, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return BertUncased, nil
	}
	if err != nil {
		return TextNormalization{}, fmt.Errorf("load tokenizer: %w", err)
	}
	var cfg struct {
		DoLowerCase          *bool `json:"do_lower_case"`
		StripAccents         *bool `json:"strip_accents"`
		TokenizeChineseChars *bool `json:"tokenize_chinese_chars"`
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		return TextNormalization{}, fmt.Errorf("load tokenizer: parse %s: %w", path, err)
	}
	return normalizationFrom(cfg.DoLowerCase, cfg.StripAccents, cfg.TokenizeChineseChars), nil
}

// normalizationFrom resolves transformers' flags: unset lower-casing and CJK splitting
// default to on; unset accent stripping follows lower-casing (strip_accents=None).
func normalizationFrom(lower, strip, cjk *bool) TextNormalization {
	n := BertUncased
	if lower != nil {
		n.Lowercase = *lower
	}
	n.StripAccents = n.Lowercase
	if strip != nil {
		n.StripAccents = *strip
	}
	if cjk != nil {
		n.SplitCJK = *cjk
	}
	return n
}

// applyAddedTokens takes [DEC]/[ENC] ids from a transformers added_tokens.json
// ({"[DEC]": 30522, "[ENC]": 30523}), which save_pretrained writes for BLIP's
// tokenizer; a missing file changes nothing.
func applyAddedTokens(t *Tokenizer, path string) error {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("load tokenizer: %w", err)
	}
	var added map[string]int64
	if err := json.Unmarshal(data, &added); err != nil {
		return fmt.Errorf("load tokenizer: parse %s: %w", path, err)
	}
	return setAddedIDs(t, added, path)
}

func setAddedIDs(t *Tokenizer, added map[string]int64, source string) error {
	dec, enc := t.dec, t.enc
	if id, ok := added[tokenDec]; ok {
		dec = id
	}
	if id, ok := added[tokenEnc]; ok {
		enc = id
	}
	if err := t.SetDecEncIDs(dec, enc); err != nil {
		return fmt.Errorf("load tokenizer: %s: %w", source, err)
	}
	return nil
}

// tokenizerJSON is the part of a transformers tokenizer.json a WordPiece model needs.
type tokenizerJSON struct {
	Model struct {
		Type                    string           `json:"type"`
		UnkToken                string           `json:"unk_token"`
		ContinuingSubwordPrefix *string          `json:"continuing_subword_prefix"`
		MaxInputCharsPerWord    *int             `json:"max_input_chars_per_word"`
		Vocab                   map[string]int64 `json:"vocab"`
	} `json:"model"`
	Normalizer  *jsonNormalizer `json:"normalizer"`
	AddedTokens []struct {
		ID      int64  `json:"id"`
		Content string `json:"content"`
	} `json:"added_tokens"`
}

type jsonNormalizer struct {
	Type               string           `json:"type"`
	Lowercase          *bool            `json:"lowercase"`
	StripAccents       *bool            `json:"strip_accents"`
	HandleChineseChars *bool            `json:"handle_chinese_chars"`
	Normalizers        []jsonNormalizer `json:"normalizers"`
}

func loadTokenizerJSON(path string) (*Tokenizer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load tokenizer: %w", err)
	}
	var tj tokenizerJSON
	if err := json.Unmarshal(data, &tj); err != nil {
		return nil, fmt.Errorf("load tokenizer: parse %s: %w", path, err)
	}
	m := tj.Model
	if m.Type != "" && m.Type != "WordPiece" {
		return nil, fmt.Errorf("load tokenizer %s: model.type %q, want WordPiece", path, m.Type)
	}
	if m.UnkToken != "" && m.UnkToken != tokenUnk {
		return nil, fmt.Errorf("load tokenizer %s: model.unk_token %q, want %s", path, m.UnkToken, tokenUnk)
	}
	if len(m.Vocab) == 0 {
		return nil, fmt.Errorf("load tokenizer %s: model.vocab is missing or empty", path)
	}
	vocab := make([]string, len(m.Vocab))
	for tok, id := range m.Vocab {
		if id < 0 || id >= int64(len(vocab)) {
			return nil, fmt.Errorf("load tokenizer %s: model.vocab[%q] = %d, outside 0..%d", path, tok, id, len(vocab)-1)
		}
		if vocab[id] != "" {
			return nil, fmt.Errorf("load tokenizer %s: model.vocab gives id %d to both %q and %q", path, id, vocab[id], tok)
		}
		vocab[id] = tok
	}
	t, err := New(vocab, tj.Normalizer.normalization())
	if err != nil {
		return nil, fmt.Errorf("load tokenizer %s: %w", path, err)
	}
	if p := m.ContinuingSubwordPrefix; p != nil {
		t.continuation = *p
	}
	if n := m.MaxInputCharsPerWord; n != nil {
		if *n <= 0 {
			return nil, fmt.Errorf("load tokenizer %s: model.max_input_chars_per_word = %d", path, *n)
		}
		t.maxWordChars = *n
	}
	added := map[string]int64{}
	for _, a := range tj.AddedTokens {
		if a.Content == tokenDec || a.Content == tokenEnc {
			added[a.Content] = a.ID
		}
	}
	if err := setAddedIDs(t, added, path+" added_tokens"); err != nil {
		return nil, err
	}
	return t, nil
}

// normalization reads the flags of a BertNormalizer, alone or inside a Sequence; a
// Lowercase or StripAccents step in a Sequence switches that step on. No normalizer
// at all means bert-base-uncased's defaults.
func (n *jsonNormalizer) normalization() TextNormalization {
	if n == nil {
		return BertUncased
	}
	switch n.Type {
	case "Sequence":
		out := TextNormalization{SplitCJK: true}
		for _, step := range n.Normalizers {
			s := step.normalization()
			switch step.Type {
			case "BertNormalizer":
				out = s
			case "Lowercase":
				out.Lowercase = true
			case "StripAccents":
				out.StripAccents = true
			}
		}
		return out
	case "Lowercase":
		return TextNormalization{Lowercase: true, SplitCJK: true}
	case "StripAccents":
		return TextNormalization{StripAccents: true, SplitCJK: true}
	}
	return normalizationFrom(n.Lowercase, n.StripAccents, n.HandleChineseChars)
}
