package tokenizer

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// This file holds the text side of BERT's WordPiece tokenizer as BLIP ran it
// (transformers' slow BertTokenizer): the basic clean-up and splitting, then greedy
// longest-match WordPiece. Character classes follow Python's unicodedata, so each
// predicate names the Python rule it mirrors.

// maxWordChars is BERT's default max_input_chars_per_word: a longer word becomes
// [UNK] whole.
const maxWordChars = 100

// wordPieces splits text into vocabulary tokens. Exact occurrences of the special
// token strings ("[SEP]", "[DEC]", ...) are kept as single tokens, as transformers
// does for its no-split tokens; everything between them goes through the basic
// tokenizer and WordPiece.
func (t *Tokenizer) wordPieces(text string) []string {
	var out []string
	for len(text) > 0 {
		at, special := t.nextSpecial(text)
		if at < 0 {
			out = t.appendPieces(out, text)
			break
		}
		out = t.appendPieces(out, text[:at])
		out = append(out, special)
		text = text[at+len(special):]
	}
	return out
}

// nextSpecial finds the earliest special-token string in text (the longest one if
// two start at the same byte) and returns its byte offset, or -1.
func (t *Tokenizer) nextSpecial(text string) (int, string) {
	best, bestTok := -1, ""
	for _, tok := range t.specialStrings {
		i := strings.Index(text, tok)
		if i < 0 {
			continue
		}
		if best < 0 || i < best || (i == best && len(tok) > len(bestTok)) {
			best, bestTok = i, tok
		}
	}
	return best, bestTok
}

// appendPieces runs BERT's BasicTokenizer on text and WordPiece on every word.
func (t *Tokenizer) appendPieces(out []string, text string) []string {
	if t.norm.Lowercase {
		// transformers lower-cases the input one character at a time (a regex
		// substitution that protects the special tokens) before the basic tokenizer,
		// so Python's context-dependent final-sigma rule never fires here.
		text = pythonLower(text, false)
	}
	text = cleanText(text)
	if t.norm.SplitCJK {
		text = isolateCJK(text)
	}
	for _, word := range strings.FieldsFunc(text, isPythonSpace) {
		if t.norm.StripAccents {
			word = stripAccents(word)
		}
		for _, w := range splitPunctuation(word) {
			out = t.appendWordPieces(out, w)
		}
	}
	return out
}

// appendWordPieces is WordPiece's greedy longest-match-first: the longest vocabulary
// entry that prefixes the rest of the word wins; pieces after the first carry the
// "##" prefix. A word with any unmatched remainder becomes one [UNK].
func (t *Tokenizer) appendWordPieces(out []string, word string) []string {
	// Offsets of every rune boundary, so candidate pieces are substrings of word.
	bounds := make([]int, 0, len(word)+1)
	for i := range word {
		bounds = append(bounds, i)
	}
	bounds = append(bounds, len(word))
	if len(bounds)-1 > t.maxWordChars {
		return append(out, t.unkToken)
	}
	var buf []byte
	n := len(out)
	for start := 0; start < len(bounds)-1; {
		match := -1
		for end := len(bounds) - 1; end > start; end-- {
			buf = buf[:0]
			if start > 0 {
				buf = append(buf, t.continuation...)
			}
			buf = append(buf, word[bounds[start]:bounds[end]]...)
			if _, ok := t.vocab[string(buf)]; ok {
				match = end
				break
			}
		}
		if match < 0 {
			return append(out[:n], t.unkToken)
		}
		out = append(out, string(buf))
		start = match
	}
	return out
}

// cleanText is BERT's _clean_text: drop NUL, U+FFFD and control characters, and turn
// every whitespace character into a plain space. Invalid UTF-8 decodes to U+FFFD and
// is dropped with it.
func cleanText(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		switch {
		case r == 0 || r == utf8.RuneError || isBertControl(r):
		case isBertWhitespace(r):
			b.WriteByte(' ')
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// isolateCJK puts spaces around every CJK ideograph, so each becomes its own word
// (BERT's _tokenize_chinese_chars).
func isolateCJK(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		if isCJKIdeograph(r) {
			b.WriteByte(' ')
			b.WriteRune(r)
			b.WriteByte(' ')
		} else {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// stripAccents decomposes to NFD and drops the nonspacing marks (category Mn).
func stripAccents(s string) string {
	d := norm.NFD.String(s)
	var b strings.Builder
	b.Grow(len(d))
	for _, r := range d {
		if !unicode.Is(unicode.Mn, r) {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// splitPunctuation makes every punctuation character its own word, splitting the
// word around it ("dog's" -> "dog", "'", "s").
func splitPunctuation(word string) []string {
	var out []string
	start := 0
	for i, r := range word {
		if !isBertPunctuation(r) {
			continue
		}
		if i > start {
			out = append(out, word[start:i])
		}
		end := i + utf8.RuneLen(r)
		out = append(out, word[i:end])
		start = end
	}
	if start < len(word) {
		out = append(out, word[start:])
	}
	return out
}

// isBertWhitespace is BERT's _is_whitespace: space, \t, \n, \r, or category Zs.
func isBertWhitespace(r rune) bool {
	return r == ' ' || r == '\t' || r == '\n' || r == '\r' || unicode.Is(unicode.Zs, r)
}

// isBertControl is transformers' _is_control: any category starting with "C" (Cc, Cf,
// Cs, Co and unassigned Cn) except \t, \n and \r, which count as whitespace.
func isBertControl(r rune) bool {
	if r == '\t' || r == '\n' || r == '\r' {
		return false
	}
	return unicode.Is(unicode.C, r) || !isAssigned(r)
}

// isAssigned reports whether r has a Unicode category other than Cn (unassigned).
func isAssigned(r rune) bool {
	return unicode.In(r, unicode.L, unicode.M, unicode.N, unicode.P, unicode.S, unicode.Z, unicode.C)
}

// isBertPunctuation is BERT's _is_punctuation: every non-alphanumeric printable ASCII
// character (so "$", "^", "`" count, though Unicode files them as symbols) plus
// Unicode category P*.
func isBertPunctuation(r rune) bool {
	if (r >= 33 && r <= 47) || (r >= 58 && r <= 64) || (r >= 91 && r <= 96) || (r >= 123 && r <= 126) {
		return true
	}
	return unicode.IsPunct(r)
}

// isCJKIdeograph is BERT's _is_chinese_char: the CJK Unified Ideographs blocks and
// extensions A-E plus the compatibility ideographs. Hangul and kana are not in it.
func isCJKIdeograph(r rune) bool {
	return (r >= 0x4E00 && r <= 0x9FFF) ||
		(r >= 0x3400 && r <= 0x4DBF) ||
		(r >= 0x20000 && r <= 0x2A6DF) ||
		(r >= 0x2A700 && r <= 0x2B73F) ||
		(r >= 0x2B740 && r <= 0x2B81F) ||
		(r >= 0x2B820 && r <= 0x2CEAF) ||
		(r >= 0xF900 && r <= 0xFAFF) ||
		(r >= 0x2F800 && r <= 0x2FA1F)
}

// isPythonSpace is Python's str.isspace(), the separator set of str.split() and of
// the regex class \s on str patterns.
func isPythonSpace(r rune) bool {
	switch {
	case r >= 0x09 && r <= 0x0D, r >= 0x1C && r <= 0x20, r == 0x85, r == 0xA0, r == 0x1680:
		return true
	case r >= 0x2000 && r <= 0x200A, r == 0x2028, r == 0x2029, r == 0x202F, r == 0x205F, r == 0x3000:
		return true
	}
	return false
}

// pythonLower is Python's str.lower(): the simple lower-case mapping, except that
// U+0130 (capital I with dot) becomes "i" + combining dot above, and, when
// finalSigma is set (a whole-string lower()), a capital sigma that ends a word
// becomes the final form ς.
func pythonLower(s string, finalSigma bool) string {
	var b strings.Builder
	b.Grow(len(s))
	for i, r := range s {
		switch {
		case r == 0x130:
			b.WriteString("i\u0307")
		case r == 0x3A3 && finalSigma && isFinalSigma(s, i):
			b.WriteRune(0x3C2)
		default:
			b.WriteRune(unicode.ToLower(r))
		}
	}
	return b.String()
}

// isFinalSigma is Unicode's Final_Sigma condition for the sigma at byte i: a cased
// letter before it and none after it, skipping case-ignorable characters both ways.
func isFinalSigma(s string, i int) bool {
	before := false
	for j := i; j > 0; {
		r, size := utf8.DecodeLastRuneInString(s[:j])
		j -= size
		if isCaseIgnorable(r) {
			continue
		}
		before = isCased(r)
		break
	}
	if !before {
		return false
	}
	for j := i + utf8.RuneLen(0x3A3); j < len(s); {
		r, size := utf8.DecodeRuneInString(s[j:])
		j += size
		if isCaseIgnorable(r) {
			continue
		}
		return !isCased(r)
	}
	return true
}

// isCased is Unicode's Cased property: Lu, Ll, Lt, Other_Lowercase, Other_Uppercase.
func isCased(r rune) bool {
	return unicode.In(r, unicode.Lu, unicode.Ll, unicode.Lt, unicode.Other_Lowercase, unicode.Other_Uppercase)
}

// isCaseIgnorable is Unicode's Case_Ignorable property: Mn, Me, Cf, Lm, Sk and the
// word-internal punctuation of Word_Break MidLetter, MidNumLet and Single_Quote.
func isCaseIgnorable(r rune) bool {
	switch r {
	case '\'', '.', ':', 0xB7, 0x387, 0x55F, 0x5F4, 0x2018, 0x2019, 0x2024, 0x2027,
		0xFE13, 0xFE52, 0xFE55, 0xFF07, 0xFF0E, 0xFF1A:
		return true
	}
	return unicode.In(r, unicode.Mn, unicode.Me, unicode.Cf, unicode.Lm, unicode.Sk)
}
