package tokenizer

import (
	"fmt"
	"slices"
	"strings"
)

// Tokenizer is BERT's uncased WordPiece tokenizer as BLIP uses it: the bert-base
// vocabulary plus two tokens appended after it, [DEC] (the decoder's bos, which
// selects the image-grounded decoder) and [ENC] (selects the image-grounded encoder).
// Their ids live in the model config, not in the vocabulary files; by default they
// are VocabSize() and VocabSize()+1 (30522 and 30523 for bert-base-uncased).
//
// A Tokenizer is immutable after construction (SetDecEncIDs aside) and safe for
// concurrent use.
type Tokenizer struct {
	tokens       []string         // id -> token, as in vocab.txt
	vocab        map[string]int64 // token -> id
	norm         TextNormalization
	unkToken     string
	continuation string // WordPiece's continuing-subword prefix, "##"
	maxWordChars int    // a longer word becomes one [UNK]

	pad, unk, cls, sep, mask, dec, enc int64
	missing                            []string // optional special tokens the vocabulary lacks
	padIsToken                         bool     // pad is the vocabulary's [PAD], not a config's id

	// specialStrings are matched verbatim in the input before any normalisation and
	// become single tokens, as transformers' no-split tokens do.
	specialStrings []string
}

// TextNormalization selects BERT's BasicTokenizer steps that vary between vocabularies.
type TextNormalization struct {
	Lowercase    bool // do_lower_case
	StripAccents bool // NFD, then drop nonspacing marks
	SplitCJK     bool // tokenize_chinese_chars: every CJK ideograph is its own word
}

// BertUncased is bert-base-uncased's normalisation, the one every BLIP checkpoint uses.
var BertUncased = TextNormalization{Lowercase: true, StripAccents: true, SplitCJK: true}

// The special tokens BLIP's text transformer knows, by their vocabulary names.
const (
	tokenPad  = "[PAD]"
	tokenUnk  = "[UNK]"
	tokenCls  = "[CLS]"
	tokenSep  = "[SEP]"
	tokenMask = "[MASK]"
	tokenDec  = "[DEC]"
	tokenEnc  = "[ENC]"
)

// New builds a tokenizer over vocab, where a token's id is its index. The vocabulary
// must hold [UNK], [CLS] and [SEP], which encoding writes. [PAD] and [MASK] may be
// missing, as HF tokenizers allow (Missing names them): BLIP never uses [MASK], and the
// padding id then comes from the model config (SetPadID). [DEC] and [ENC] take their ids
// from the vocabulary if it lists them, else len(vocab) and len(vocab)+1.
func New(vocab []string, norm TextNormalization) (*Tokenizer, error) {
	t := &Tokenizer{
		tokens:       slices.Clone(vocab),
		vocab:        make(map[string]int64, len(vocab)),
		norm:         norm,
		unkToken:     tokenUnk,
		continuation: "##",
		maxWordChars: maxWordChars,
	}
	for id, tok := range vocab {
		if tok == "" {
			return nil, fmt.Errorf("tokenizer: vocabulary entry %d is empty", id)
		}
		if prev, dup := t.vocab[tok]; dup {
			return nil, fmt.Errorf("tokenizer: vocabulary token %q appears twice (ids %d and %d)", tok, prev, id)
		}
		t.vocab[tok] = int64(id)
	}
	for _, s := range []struct {
		name string
		id   *int64
	}{{tokenPad, &t.pad}, {tokenUnk, &t.unk}, {tokenCls, &t.cls}, {tokenSep, &t.sep}, {tokenMask, &t.mask}} {
		id, ok := t.vocab[s.name]
		switch {
		case ok:
			*s.id = id
		case s.name == tokenPad || s.name == tokenMask:
			*s.id = -1
			t.missing = append(t.missing, s.name)
		default:
			return nil, fmt.Errorf("tokenizer: vocabulary of %d tokens has no %s", len(vocab), s.name)
		}
	}
	t.padIsToken = t.pad >= 0
	t.dec, t.enc = int64(len(vocab)), int64(len(vocab))+1
	if id, ok := t.vocab[tokenDec]; ok {
		t.dec = id
	}
	if id, ok := t.vocab[tokenEnc]; ok {
		t.enc = id
	}
	for _, tok := range []string{tokenPad, tokenUnk, tokenCls, tokenSep, tokenMask, tokenDec, tokenEnc} {
		if !slices.Contains(t.missing, tok) { // a token the vocabulary lacks is plain text, as in HF
			t.specialStrings = append(t.specialStrings, tok)
		}
	}
	return t, nil
}

// SetDecEncIDs takes [DEC] and [ENC] from a model config (bos_token_id and
// enc_token_id) instead of the defaults after the vocabulary. An id inside the
// vocabulary is accepted only where the vocabulary itself names that token.
func (t *Tokenizer) SetDecEncIDs(dec, enc int64) error {
	if dec < 0 || enc < 0 || dec == enc {
		return fmt.Errorf("tokenizer: [DEC] id %d and [ENC] id %d must be distinct and non-negative", dec, enc)
	}
	for _, s := range []struct {
		name string
		id   int64
	}{{tokenDec, dec}, {tokenEnc, enc}} {
		if s.id < int64(len(t.tokens)) && t.tokens[s.id] != s.name {
			return fmt.Errorf("tokenizer: %s id %d is vocabulary token %q", s.name, s.id, t.tokens[s.id])
		}
	}
	t.dec, t.enc = dec, enc
	return nil
}

// Missing names the special tokens the vocabulary lacks ([PAD], [MASK]); nil when it has
// them all.
func (t *Tokenizer) Missing() []string { return slices.Clone(t.missing) }

// SetPadID gives a vocabulary without [PAD] the padding id of a model config
// (pad_token_id), as HF does; padded positions are masked out, so any id the model's
// embedding holds serves. A vocabulary with [PAD] keeps its own, which id must equal.
func (t *Tokenizer) SetPadID(id int64) error {
	switch {
	case id < 0:
		return fmt.Errorf("tokenizer: pad id %d is negative", id)
	case t.padIsToken && id != t.pad:
		return fmt.Errorf("tokenizer: pad id %d, but the vocabulary's [PAD] is %d", id, t.pad)
	}
	t.pad = id
	return nil
}

// VocabSize is the number of entries in the vocabulary file, without [DEC]/[ENC].
func (t *Tokenizer) VocabSize() int { return len(t.tokens) }

// Normalization reports the text normalisation this tokenizer applies.
func (t *Tokenizer) Normalization() TextNormalization { return t.norm }

// PadID is [PAD], the padding id (0 in bert-base): the vocabulary's, or the one
// SetPadID gave; -1 when there is neither, and then EncodeBatch cannot pad.
func (t *Tokenizer) PadID() int64 { return t.pad }

// UnkID is [UNK], what an unmatched word becomes (100 in bert-base).
func (t *Tokenizer) UnkID() int64 { return t.unk }

// ClsID is [CLS], the first id of every encoding; it selects the unimodal encoder (101).
func (t *Tokenizer) ClsID() int64 { return t.cls }

// SepID is [SEP], the last id of every encoding and the decoder's EOS (102).
func (t *Tokenizer) SepID() int64 { return t.sep }

// MaskID is [MASK] (103); -1 when the vocabulary has none.
func (t *Tokenizer) MaskID() int64 { return t.mask }

// DecID is [DEC], the decoder's bos, which selects the image-grounded decoder (30522).
func (t *Tokenizer) DecID() int64 { return t.dec }

// EncID is [ENC], which selects the image-grounded encoder (30523).
func (t *Tokenizer) EncID() int64 { return t.enc }

// Tokenize returns the WordPiece tokens of text, without [CLS]/[SEP].
func (t *Tokenizer) Tokenize(text string) []string {
	return t.wordPieces(text)
}

// Encode returns [CLS] tokens [SEP] as ids, untruncated.
func (t *Tokenizer) Encode(text string) []int64 {
	pieces := t.wordPieces(text)
	ids := make([]int64, 0, len(pieces)+2)
	ids = append(ids, t.cls)
	for _, p := range pieces {
		ids = append(ids, t.tokenID(p))
	}
	return append(ids, t.sep)
}

func (t *Tokenizer) tokenID(tok string) int64 {
	switch tok {
	case tokenDec:
		return t.dec
	case tokenEnc:
		return t.enc
	}
	if id, ok := t.vocab[tok]; ok {
		return id
	}
	return t.unk
}

// PadMode chooses the length a batch is padded to.
type PadMode int

const (
	// PadToLongest pads to the longest sequence of the batch (padding="longest").
	PadToLongest PadMode = iota
	// PadToMax pads every sequence to maxLen (padding="max_length").
	PadToMax
)

// EncodeBatch encodes texts as [CLS] tokens [SEP], truncated to maxLen ids (the
// tokens are cut, [SEP] stays last) and padded with PadID per pad (a tokenizer without
// one pads with -1, which no model takes: give it its model's with SetPadID). mask holds 1 for
// real tokens and 0 for padding. maxLen <= 0 means no truncation, and then PadToMax
// pads to the longest; a positive maxLen below 2 is raised to 2, the room for
// [CLS] and [SEP].
func (t *Tokenizer) EncodeBatch(texts []string, maxLen int, pad PadMode) (ids, mask [][]int64) {
	if maxLen > 0 && maxLen < 2 {
		maxLen = 2
	}
	ids = make([][]int64, len(texts))
	longest := 0
	for i, text := range texts {
		seq := t.Encode(text)
		if maxLen > 0 && len(seq) > maxLen {
			seq = append(seq[:maxLen-1], t.sep)
		}
		ids[i] = seq
		longest = max(longest, len(seq))
	}
	width := longest
	if pad == PadToMax && maxLen > 0 {
		width = maxLen
	}
	mask = make([][]int64, len(texts))
	for i, seq := range ids {
		m := make([]int64, width)
		for j := range seq {
			m[j] = 1
		}
		for len(seq) < width {
			seq = append(seq, t.pad)
		}
		ids[i], mask[i] = seq, m
	}
	return ids, mask
}

// Decode turns ids back into text the way transformers' BertTokenizer.decode does:
// tokens joined by spaces, "##" pieces merged into the word before them, and the
// clean-up that removes the space before ". ? ! ," and English contractions. With
// skipSpecial, every special id ([PAD] [UNK] [CLS] [SEP] [MASK] [DEC] [ENC]) is
// dropped. An id outside the vocabulary decodes as [UNK] and is kept even then,
// as transformers does.
func (t *Tokenizer) Decode(ids []int64, skipSpecial bool) string {
	// transformers decodes runs of vocabulary tokens separately from the added
	// tokens ([DEC], [ENC]) and joins the parts with spaces, so "##" never merges
	// across an added token.
	var parts, run []string
	flush := func() {
		if len(run) > 0 {
			parts = append(parts, strings.TrimFunc(strings.ReplaceAll(strings.Join(run, " "), " ##", ""), isPythonSpace))
			run = run[:0]
		}
	}
	for _, id := range ids {
		if skipSpecial && t.isSpecial(id) {
			continue
		}
		switch {
		case id == t.dec && (id >= int64(len(t.tokens))):
			flush()
			parts = append(parts, tokenDec)
		case id == t.enc && (id >= int64(len(t.tokens))):
			flush()
			parts = append(parts, tokenEnc)
		case id >= 0 && id < int64(len(t.tokens)):
			run = append(run, t.tokens[id])
		default:
			run = append(run, tokenUnk)
		}
	}
	flush()
	return cleanUpTokenization(strings.Join(parts, " "))
}

func (t *Tokenizer) isSpecial(id int64) bool {
	switch id {
	case t.unk, t.cls, t.sep, t.dec, t.enc:
		return true
	case t.mask:
		return id >= 0
	case t.pad:
		// A config's pad id in a vocabulary without [PAD] is an ordinary token there.
		return t.padIsToken
	}
	return false
}

// cleanupPairs is transformers' clean_up_tokenization, applied in this order, each a
// plain left-to-right replace-all (so " ' " is gone before " n't" is looked for).
var cleanupPairs = [][2]string{
	{" .", "."}, {" ?", "?"}, {" !", "!"}, {" ,", ","}, {" ' ", "'"},
	{" n't", "n't"}, {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"},
}

func cleanUpTokenization(s string) string {
	for _, p := range cleanupPairs {
		s = strings.ReplaceAll(s, p[0], p[1])
	}
	return s
}
