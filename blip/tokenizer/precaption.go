package tokenizer

import "strings"

// PreCaption cleans a caption the way BLIP's pre_caption does before every text is
// tokenised (data/utils.py):
//
//	lower-case (Python's str.lower)
//	each of  . ! " ( ) * # : ; ~  -> one space (commas, apostrophes, ? and - survive)
//	every run of 2+ whitespace characters -> one space (a lone \t or \n survives)
//	drop trailing newlines, then leading/trailing spaces
//	keep the first maxWords space-separated words
//
// Whitespace is Python's: the regex \s on a str pattern matches Unicode whitespace
// such as U+00A0 and U+3000, not only ASCII. maxWords <= 0 keeps every word (the
// Python slice would drop words instead; no caller wants that).
func PreCaption(text string, maxWords int) string {
	runes := []rune(pythonLower(text, true))
	for i, r := range runes {
		if strings.ContainsRune(".!\"()*#:;~", r) {
			runes[i] = ' '
		}
	}
	var b strings.Builder
	b.Grow(len(text))
	for i := 0; i < len(runes); {
		j := i
		for j < len(runes) && isPythonSpace(runes[j]) {
			j++
		}
		switch {
		case j-i >= 2:
			b.WriteByte(' ')
		case j-i == 1:
			b.WriteRune(runes[i])
		default:
			b.WriteRune(runes[i])
			j = i + 1
		}
		i = j
	}
	caption := strings.TrimRight(b.String(), "\n")
	caption = strings.Trim(caption, " ")
	if maxWords <= 0 {
		return caption
	}
	words := strings.Split(caption, " ")
	if len(words) > maxWords {
		caption = strings.Join(words[:maxWords], " ")
	}
	return caption
}
