package synth

import (
	"regexp"
	"slices"
	"strings"
	"sync"
)

// grammarWords are the words of every caption the grammar writes, and of the captioner's
// prompt ("a picture of").
var grammarWords = []string{
	"a", "an", "the", "of", "and", "on", "in", "at", "to", "there", "is", "picture",
	"shape", "shapes", "background", "corner", "one", "two", "three",
	"left", "right", "top", "bottom", "middle", "center", "above", "below", "over", "under",
	"little", "big",
}

var formatVerb = regexp.MustCompile(`%[0-9]*[a-zA-Z]`)

// WorldVocab is the WordPiece vocabulary of the synthetic world, as vocab.txt lists it
// (a token's id is its index): BERT's five special tokens first, at the ids the tiny
// preset uses ([PAD] 0, [UNK] 1, [CLS] 2, [SEP] 3, [MASK] 4); then every word of the
// grammar, and of the junk, as one token each; then every ASCII punctuation mark, the
// digits and letters, and their "##" continuations. So any ASCII text tokenises without
// [UNK]: a caption word in one token, junk such as "IMG_2041.jpg" in its pieces
// ("img _ 2 ##0 ##4 ##1 . jpg"). [DEC] and [ENC] are not listed; as with the tiny preset,
// they take the ids after the last token (bos_token_id = len, enc_token_id = len+1).
func WorldVocab() []string { return slices.Clone(worldVocab()) }

var worldVocab = sync.OnceValue(func() []string {
	var v []string
	seen := map[string]bool{}
	add := func(words ...string) {
		for _, w := range words {
			if !seen[w] {
				seen[w] = true
				v = append(v, w)
			}
		}
	}
	add("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
	add(grammarWords...)
	add(Shapes...)
	add(Colours...)
	add(Sizes...)
	add(Textures...)
	for _, group := range [][]string{junkFileNames, junkSlogans, junkEmpty} {
		for _, text := range group {
			for _, w := range captionWords(formatVerb.ReplaceAllString(text, " ")) {
				if strings.Trim(w, "0123456789") == w {
					add(w)
				}
			}
		}
	}
	for c := byte('!'); c <= '~'; c++ {
		if isASCIIPunct(c) {
			add(string(c))
		}
	}
	const digits, letters = "0123456789", "abcdefghijklmnopqrstuvwxyz"
	for _, c := range digits + letters {
		add(string(c))
	}
	for _, c := range digits + letters {
		add("##" + string(c))
	}
	return v
})

// isASCIIPunct is BERT's ASCII punctuation: every printable non-alphanumeric character.
func isASCIIPunct(c byte) bool {
	return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126)
}
