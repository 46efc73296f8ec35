package eval

import "strings"

// PTBTokenize is the text step of coco-caption (blip-spec §12b): Stanford CoreNLP's
// PTBTokenizer with -preserveLines -lowerCase, then every punctuation token of
// coco-caption's list removed. It returns the remaining tokens.
//
// It reimplements the tokenizer's rules that matter for ASCII captions:
//   - lower-casing; words split on white space;
//   - ( ) { } become -LRB- -RRB- -LCB- -RCB-, double quotes “ or ”, and all of them
//     are then removed; [ ] become -LSB- -RSB- and are kept, as coco-caption keeps them;
//   - . , ; : ? ! split off words; a period stays inside a word (3.5), after
//     letter-period runs (u.s.) and after the abbreviations of ptbAbbreviations; a comma or colon stays
//     between digits (1,000  3:30); runs of periods are one token (...);
//   - clitics split: n't 's 're 've 'll 'd 'm (don't → do n't, can't → ca n't), and
//     cannot → can not;
//   - $ # split before a word, % after it; & / and single hyphens stay inside words;
//     -- splits; quotes (' `) at the edges of a word split off.
//
// Known differences from CoreNLP 3.4.1 (coco-caption's jar): non-ASCII text is only
// lower-cased and split on white space and the punctuation above; CoreNLP's longer
// abbreviation lists, its sentence-final abbreviation rule (it adds a "." token after
// "etc." at a line end; both forms lose the period token here), URLs, e-mail
// addresses, emoticons and fractions are not special-cased; "gonna"-style splits
// (gon na) are not made.
func PTBTokenize(text string) []string {
	var out []string
	for _, w := range strings.Fields(strings.ToLower(text)) {
		for _, tok := range splitWord(w) {
			if !ptbPunctuation[tok] {
				out = append(out, tok)
			}
		}
	}
	return out
}

// ptbPunctuation is coco-caption's PUNCTUATIONS list (pycocoevalcap tokenizer);
// membership is case-sensitive, so -LSB- and -RSB- survive.
var ptbPunctuation = map[string]bool{
	"''": true, "'": true, "``": true, "`": true, "-LRB-": true, "-RRB-": true, "-LCB-": true, "-RCB-": true,
	".": true, "?": true, "!": true, ",": true, ":": true, "-": true, "--": true, "...": true, ";": true,
}

// ptbAbbreviations keep their final period (lower-cased, without it).
var ptbAbbreviations = map[string]bool{
	"mr": true, "mrs": true, "ms": true, "dr": true, "st": true, "jr": true, "sr": true, "vs": true,
	"etc": true, "inc": true, "ltd": true, "co": true, "corp": true, "no": true, "mt": true, "ft": true,
	"ave": true, "prof": true, "gen": true, "sgt": true, "capt": true, "jan": true, "feb": true,
	"mar": true, "apr": true, "aug": true, "sep": true, "sept": true, "oct": true, "nov": true, "dec": true,
}

var ptbClitics = []string{"n't", "'s", "'re", "'ve", "'ll", "'d", "'m"}

// splitWord splits one white-space-delimited, lower-cased word into PTB tokens.
func splitWord(w string) []string {
	var pre, post []string
lead:
	for w != "" {
		switch c := w[0]; {
		case c == '"':
			pre, w = append(pre, "``"), w[1:]
		case c == '(' || c == ')' || c == '[' || c == ']' || c == '{' || c == '}':
			pre, w = append(pre, bracketToken(c)), w[1:]
		case c == '$' || c == '#' || c == '`' || (c == '\'' && !isClitic(w)):
			pre, w = append(pre, string(c)), w[1:]
		case strings.HasPrefix(w, "--"):
			pre, w = append(pre, "--"), w[2:]
		case c == '-' && len(w) > 1 && !isDigit(w[1]):
			pre, w = append(pre, "-"), w[1:]
		case c == ',' || c == ';' || c == ':' || c == '?' || c == '!':
			pre, w = append(pre, string(c)), w[1:]
		default:
			break lead
		}
	}
trail:
	for w != "" {
		n := len(w)
		switch c := w[n-1]; {
		case c == '"':
			post, w = append(post, "''"), w[:n-1]
		case c == '(' || c == ')' || c == '[' || c == ']' || c == '{' || c == '}':
			post, w = append(post, bracketToken(c)), w[:n-1]
		case c == '%' || c == ',' || c == ';' || c == ':' || c == '?' || c == '!' || c == '`':
			post, w = append(post, string(c)), w[:n-1]
		case strings.HasSuffix(w, "--"):
			post, w = append(post, "--"), w[:n-2]
		case c == '-' && n > 1:
			post, w = append(post, "-"), w[:n-1]
		case c == '\'' && !strings.HasSuffix(w, "n'"):
			post, w = append(post, "'"), w[:n-1]
		case c == '.':
			dots := n - len(strings.TrimRight(w, "."))
			if dots == 1 && keepsPeriod(w[:n-1]) {
				break trail
			}
			tok := "."
			if dots > 1 {
				tok = strings.Repeat(".", dots)
			}
			post, w = append(post, tok), w[:n-dots]
		default:
			break trail
		}
	}
	var mid []string
	if w != "" {
		mid = splitInner(w)
	}
	out := append(pre, mid...)
	for i := len(post) - 1; i >= 0; i-- {
		out = append(out, post[i])
	}
	return out
}

// splitInner splits what the edge rules left: clitics at the end, and punctuation
// inside the word that PTB separates.
func splitInner(w string) []string {
	if w == "cannot" {
		return []string{"can", "not"}
	}
	for _, cl := range ptbClitics {
		if stem, ok := strings.CutSuffix(w, cl); ok && stem != "" {
			return append(splitInner(stem), cl)
		}
	}
	var out []string
	start := 0
	for i := 0; i < len(w); i++ {
		c := w[i]
		split := false
		width := 1
		switch {
		case c == '"' || c == '(' || c == ')' || c == '{' || c == '}' || c == '[' || c == ']' || c == ';' || c == '?' || c == '!':
			split = true
		case c == ',' || c == ':':
			split = !(i > 0 && i+1 < len(w) && isDigit(w[i-1]) && isDigit(w[i+1]))
		case c == '-' && i+1 < len(w) && w[i+1] == '-':
			split, width = true, 2
		case c == '.' && i+2 < len(w) && w[i+1] == '.' && w[i+2] == '.':
			split, width = true, 3
		}
		if !split {
			continue
		}
		if i > start {
			out = append(out, w[start:i])
		}
		tok := w[i : i+width]
		switch tok {
		case "\"":
			tok = "''"
		case "(", ")", "[", "]", "{", "}":
			tok = bracketToken(tok[0])
		}
		out = append(out, tok)
		i += width - 1
		start = i + 1
	}
	if start < len(w) {
		out = append(out, w[start:])
	}
	return out
}

func isClitic(w string) bool {
	for _, cl := range ptbClitics {
		if w == cl {
			return true
		}
	}
	return false
}

// keepsPeriod reports whether a word keeps its final period: letter runs with
// periods (u.s.) and the abbreviations.
func keepsPeriod(stem string) bool {
	if stem == "" {
		return false
	}
	if ptbAbbreviations[stem] {
		return true
	}
	if strings.Contains(stem, ".") {
		for i := 0; i < len(stem); i++ {
			if c := stem[i]; c != '.' && !(c >= 'a' && c <= 'z') {
				return false
			}
		}
		return true
	}
	return false
}

func bracketToken(c byte) string {
	switch c {
	case '(':
		return "-LRB-"
	case ')':
		return "-RRB-"
	case '[':
		return "-LSB-"
	case ']':
		return "-RSB-"
	case '{':
		return "-LCB-"
	}
	return "-RCB-"
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
