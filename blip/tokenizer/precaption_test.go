package tokenizer

import "testing"

func TestPreCaptionMatchesBLIPPreCaption(t *testing.T) {
	cases := []struct {
		name     string
		in       string
		maxWords int
		want     string
	}{
		{"lower-cases and drops the full stop", "A Dog.", 50, "a dog"},
		{"a run of removed characters leaves one space", "Hello!!! World", 50, "hello world"},
		{"quotes parentheses and stars go", `He said "hi" (twice)*`, 50, "he said hi twice"},
		{"hash colon semicolon tilde go", "#tag: a;b~c", 50, "tag a b c"},
		{"commas apostrophes hyphens question marks slashes stay", "commas, apostrophes' hyphens-and? slashes/ stay", 50, "commas, apostrophes' hyphens-and? slashes/ stay"},
		{"a single tab survives", "a\tb", 50, "a\tb"},
		{"two tabs collapse to a space", "a\t\tb", 50, "a b"},
		{"space then tab collapse", "a \tb", 50, "a b"},
		{"a trailing newline goes", "a dog\n", 50, "a dog"},
		{"trailing newlines collapse then go", "a dog\n\n", 50, "a dog"},
		{"space newline collapse then strip", "a dog \n", 50, "a dog"},
		{"surrounding spaces go", "  a dog  ", 50, "a dog"},
		{"a leading tab stays", "\ta dog", 50, "\ta dog"},
		{"truncates to max words", "one two three four", 2, "one two"},
		{"exactly max words is kept", "one two three", 3, "one two three"},
		{"unicode whitespace runs collapse", "a\u00a0\u00a0b", 50, "a b"},
		{"a single ideographic space survives", "a\u3000b", 50, "a\u3000b"},
		{"whole-string lower gives the final sigma", "ΟΔΟΣ ΟΔΟΣ.", 50, "οδος οδος"},
		{"dotted capital I lowers to i + combining dot", "İstanbul", 50, "i\u0307stanbul"},
		{"spaced full stop", "a . b", 50, "a b"},
		{"only removed characters", "...", 50, ""},
		{"empty", "", 50, ""},
		{"an inner newline survives", "a\nb", 50, "a\nb"},
		{"line and paragraph separators are whitespace", "x\u2028\u2029y", 50, "x y"},
		{"full stop then newline", "end.\n", 50, "end"},
		{"information separators count as whitespace", "a\x1cb\x1d", 50, "a\x1cb\x1d"},
		{"full stop then tab", "a dog.\t", 50, "a dog"},
		{"non-positive max words keeps everything", "one two three", 0, "one two three"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := PreCaption(c.in, c.maxWords); got != c.want {
				t.Errorf("PreCaption(%q, %d) = %q, want %q", c.in, c.maxWords, got, c.want)
			}
		})
	}
}
