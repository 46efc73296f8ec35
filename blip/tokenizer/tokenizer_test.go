package tokenizer

import (
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// bertTestVocab is a small stand-in for bert-base-uncased's vocab.txt, laid out like
// it: [PAD] first, [UNK] [CLS] [SEP] [MASK] at 100..103, words and "##" pieces after.
func bertTestVocab() []string {
	v := make([]string, 0, 160)
	v = append(v, "[PAD]")
	for i := 1; i < 100; i++ {
		v = append(v, "[unused"+string(rune('0'+i/10))+string(rune('0'+i%10))+"]")
	}
	v = append(v, "[UNK]", "[CLS]", "[SEP]", "[MASK]")
	v = append(v,
		"a", "picture", "of", "dog", "##s", "cafe", "naive", "hello", "world", "i",
		"don", "t", "it", "s", "we", "ve", "they", "re", "m", "can",
		"un", "##aff", "##able", "the", "sep", "我", "爱", "$", "5", "^", "`",
		",", ".", "!", "?", "'", "[", "]", "«", "»", "…", "—", "-", "σ", "ς", "οδος",
		"Dog", "b", "##a", "i\u0307", "x", "##y", "nom", "##ad", "##ic",
	)
	return v
}

func newTestTokenizer(t *testing.T, norm TextNormalization) *Tokenizer {
	t.Helper()
	tok, err := New(bertTestVocab(), norm)
	if err != nil {
		t.Fatalf("NewTokenizer: %v", err)
	}
	return tok
}

func TestTokenizeFollowsBertBasicTokenizerAndWordPiece(t *testing.T) {
	tok := newTestTokenizer(t, BertUncased)
	cases := []struct {
		name string
		text string
		want []string
	}{
		{"lower-cases and strips accents", "Café NAÏVE", []string{"cafe", "naive"}},
		{"dotted capital I loses its dot with the accents", "İ", []string{"i"}},
		{"continuation pieces", "dogs", []string{"dog", "##s"}},
		{"greedy longest match first", "unaffable", []string{"un", "##aff", "##able"}},
		{"a word with an unmatched remainder is one [UNK]", "dogq", []string{"[UNK]"}},
		{"unknown word", "zebra", []string{"[UNK]"}},
		{"ascii punctuation splits", "hello,world!", []string{"hello", ",", "world", "!"}},
		{"ascii symbols count as punctuation", "$5^`", []string{"$", "5", "^", "`"}},
		{"unicode punctuation splits", "«hello»…world—a", []string{"«", "hello", "»", "…", "world", "—", "a"}},
		{"unicode symbols do not split", "a©b", []string{"[UNK]"}},
		{"apostrophe splits contractions", "don't", []string{"don", "'", "t"}},
		{"cjk ideographs become words", "我爱dog", []string{"我", "爱", "dog"}},
		{"hangul is not isolated", "a한b", []string{"[UNK]"}},
		{"control and format characters vanish", "do\x00g\u200b\x07s\ufffd", []string{"dog", "##s"}},
		{"private-use and unassigned characters vanish", "do\ue000g\u0378", []string{"dog"}},
		{"tab newline and unicode spaces separate", "a\tdog\npicture\u00a0of\u3000a\u2028dog", []string{"a", "dog", "picture", "of", "a", "dog"}},
		{"only combining marks leave nothing", "\u0301\u0302", nil},
		{"special tokens are kept verbatim", "a[SEP]dog [MASK]", []string{"a", "[SEP]", "dog", "[MASK]"}},
		{"added tokens are kept verbatim", "[DEC] a dog", []string{"[DEC]", "a", "dog"}},
		{"lower-case specials are plain text", "[sep]", []string{"[", "sep", "]"}},
		{"sigma lowers to the plain form per character", "ΟΔΟΣ", []string{"[UNK]"}},
		{"empty", "", nil},
		{"only spaces", "  \t\n ", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := tok.Tokenize(c.text)
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("Tokenize(%q) = %q, want %q", c.text, got, c.want)
			}
		})
	}
}

func TestTokenizeWordLengthLimitIs100Characters(t *testing.T) {
	tok := newTestTokenizer(t, BertUncased)
	at100 := tok.Tokenize(strings.Repeat("a", 100))
	if len(at100) != 100 || at100[0] != "a" || at100[99] != "##a" {
		t.Errorf("100-char word: got %d pieces starting %q, want a + 99 × ##a", len(at100), at100[:min(2, len(at100))])
	}
	if got := tok.Tokenize(strings.Repeat("a", 101)); !reflect.DeepEqual(got, []string{"[UNK]"}) {
		t.Errorf("101-char word: got %d pieces, want one [UNK]", len(got))
	}
	// The limit counts characters, not bytes or pieces.
	if got := tok.Tokenize("x" + strings.Repeat("y", 99)); len(got) != 100 {
		t.Errorf("100-char x+y word: got %d pieces, want 100", len(got))
	}
}

func TestTokenizeNormalizationVariants(t *testing.T) {
	cases := []struct {
		name string
		norm TextNormalization
		text string
		want []string
	}{
		{"cased keeps capitals and accents", TextNormalization{SplitCJK: true}, "Dog Café", []string{"Dog", "[UNK]"}},
		{"lower-case without accent stripping keeps the combining dot", TextNormalization{Lowercase: true, SplitCJK: true}, "İ", []string{"i\u0307"}},
		{"accent stripping without lower-casing", TextNormalization{StripAccents: true, SplitCJK: true}, "café", []string{"cafe"}},
		{"cjk splitting off leaves ideographs joined", TextNormalization{Lowercase: true, StripAccents: true}, "我爱", []string{"[UNK]"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := newTestTokenizer(t, c.norm).Tokenize(c.text)
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("Tokenize(%q) = %q, want %q", c.text, got, c.want)
			}
		})
	}
}

func TestSpecialIDsComeFromTheVocabularyAndDecEncFollowIt(t *testing.T) {
	tok := newTestTokenizer(t, BertUncased)
	n := int64(len(bertTestVocab()))
	got := []int64{tok.PadID(), tok.UnkID(), tok.ClsID(), tok.SepID(), tok.MaskID(), tok.DecID(), tok.EncID()}
	want := []int64{0, 100, 101, 102, 103, n, n + 1}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("special ids = %v, want %v", got, want)
	}
	if tok.VocabSize() != int(n) {
		t.Errorf("VocabSize = %d, want %d", tok.VocabSize(), n)
	}
	if err := tok.SetDecEncIDs(500, 501); err != nil {
		t.Fatalf("SetDecEncIDs: %v", err)
	}
	if ids := tok.Encode("[DEC][ENC]"); !reflect.DeepEqual(ids, []int64{101, 500, 501, 102}) {
		t.Errorf("Encode([DEC][ENC]) after SetDecEncIDs = %v", ids)
	}
	for _, bad := range [][2]int64{{7, 7}, {-1, 600}, {104, 600}, {600, 0}} {
		if err := tok.SetDecEncIDs(bad[0], bad[1]); err == nil {
			t.Errorf("SetDecEncIDs(%d, %d) accepted", bad[0], bad[1])
		}
	}
}

func TestEncodeWrapsTokensInClsAndSep(t *testing.T) {
	tok := newTestTokenizer(t, BertUncased)
	v := bertTestVocab()
	id := func(s string) int64 {
		for i, w := range v {
			if w == s {
				return int64(i)
			}
		}
		t.Fatalf("%q not in test vocab", s)
		return 0
	}
	got := tok.Encode("A picture of dogs, zebra!")
	want := []int64{101, id("a"), id("picture"), id("of"), id("dog"), id("##s"), id(","), 100, id("!"), 102}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Encode = %v, want %v", got, want)
	}
	if got := tok.Encode(""); !reflect.DeepEqual(got, []int64{101, 102}) {
		t.Errorf("Encode(\"\") = %v, want [101 102]", got)
	}
}

func TestEncodeBatchTruncatesKeepingSepAndPads(t *testing.T) {
	tok := newTestTokenizer(t, BertUncased)
	texts := []string{"a dog", "a picture of a dog , a dog", ""}
	full := make([][]int64, len(texts))
	for i, s := range texts {
		full[i] = tok.Encode(s)
	}
	cases := []struct {
		name      string
		maxLen    int
		pad       PadMode
		wantWidth int
	}{
		{"pad to longest, no truncation needed", 20, PadToLongest, len(full[1])},
		{"pad to max", 20, PadToMax, 20},
		{"truncate and pad to longest", 5, PadToLongest, 5},
		{"truncate and pad to max", 6, PadToMax, 6},
		{"no limit", 0, PadToMax, len(full[1])},
		{"limit below two keeps cls and sep", 1, PadToMax, 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ids, mask := tok.EncodeBatch(texts, c.maxLen, c.pad)
			if len(ids) != len(texts) || len(mask) != len(texts) {
				t.Fatalf("got %d/%d rows, want %d", len(ids), len(mask), len(texts))
			}
			limit := c.maxLen
			if limit > 0 && limit < 2 {
				limit = 2
			}
			for i, row := range ids {
				if len(row) != c.wantWidth || len(mask[i]) != c.wantWidth {
					t.Fatalf("row %d: width %d/%d, want %d", i, len(row), len(mask[i]), c.wantWidth)
				}
				want := full[i]
				if limit > 0 && len(want) > limit {
					want = append(append([]int64{}, want[:limit-1]...), 102)
				}
				for j := range row {
					real := j < len(want)
					switch {
					case real && (row[j] != want[j] || mask[i][j] != 1):
						t.Errorf("row %d pos %d: id %d mask %d, want id %d mask 1", i, j, row[j], mask[i][j], want[j])
					case !real && (row[j] != 0 || mask[i][j] != 0):
						t.Errorf("row %d pos %d: id %d mask %d, want padding", i, j, row[j], mask[i][j])
					}
				}
				if row[len(want)-1] != 102 {
					t.Errorf("row %d: last real id %d, want [SEP]", i, row[len(want)-1])
				}
			}
		})
	}
}

func TestDecodeJoinsMergesAndCleansUpLikeTransformers(t *testing.T) {
	tok := newTestTokenizer(t, BertUncased)
	dec, enc := tok.DecID(), tok.EncID()
	cases := []struct {
		name        string
		text        string
		prefix      []int64 // ids put before the encoded text
		skipSpecial bool
		want        string
	}{
		{"round trip with punctuation", "A picture of dogs.", nil, true, "a picture of dogs."},
		{"contraction n't via apostrophe", "I don't", nil, true, "i don't"},
		{"possessive", "it's a dog's", nil, true, "it's a dog's"},
		{"comma question exclamation", "hello , world ? dog !", nil, true, "hello, world? dog!"},
		{"accents do not come back", "Café", nil, true, "cafe"},
		{"unknown words decode as nothing when skipping specials", "a zebra dog", nil, true, "a dog"},
		{"specials kept", "a dog", nil, false, "[CLS] a dog [SEP]"},
		{"added tokens kept and spaced", "a dog", []int64{dec, enc}, false, "[DEC] [ENC] [CLS] a dog [SEP]"},
		{"added tokens skipped", "a dog", []int64{dec}, true, "a dog"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ids := append(append([]int64{}, c.prefix...), tok.Encode(c.text)...)
			if got := tok.Decode(ids, c.skipSpecial); got != c.want {
				t.Errorf("Decode(Encode(%q)) = %q, want %q", c.text, got, c.want)
			}
		})
	}
	// "##" pieces never merge across an added token.
	hashS := tok.Encode("dogs")[2]
	if got := tok.Decode([]int64{dec, hashS}, false); got != "[DEC] ##s" {
		t.Errorf("Decode([DEC] ##s) = %q, want %q", got, "[DEC] ##s")
	}
	// Ids outside the vocabulary decode as [UNK], which skipping specials keeps.
	outside := []int64{hashS, 9999, int64(tok.VocabSize()) + 5, -3}
	if got := tok.Decode(outside, true); got != "##s [UNK] [UNK] [UNK]" {
		t.Errorf("Decode(##s, out-of-range ids) = %q", got)
	}
}

func TestCleanUpTokenizationRules(t *testing.T) {
	cases := []struct{ in, want string }{
		{"a . b", "a. b"},
		{"what ? yes !", "what? yes!"},
		{"one , two", "one, two"},
		{"is n't", "isn't"},
		{"i 'm", "i'm"},
		{"dog 's", "dog's"},
		{"we 've", "we've"},
		{"they 're", "they're"},
		{"don ' t", "don't"},
		{"' quoted '", "' quoted '"},
		{"a .. b", "a.. b"},
		{"x . . y", "x.. y"},
	}
	for _, c := range cases {
		if got := cleanUpTokenization(c.in); got != c.want {
			t.Errorf("cleanUpTokenization(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestNewTokenizerRejectsBadVocabularies(t *testing.T) {
	base := []string{"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "dog"}
	cases := []struct {
		name  string
		vocab []string
		want  string
	}{
		{"missing [SEP]", []string{"[PAD]", "[UNK]", "[CLS]", "[MASK]", "dog"}, "[SEP]"},
		{"missing [UNK]", []string{"[CLS]", "[SEP]", "dog"}, "[UNK]"},
		{"duplicate token", append(append([]string{}, base...), "dog"), `"dog" appears twice`},
		{"empty token", append(append([]string{}, base...), ""), "entry 6 is empty"},
	}
	for _, c := range cases {
		if _, err := New(c.vocab, BertUncased); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want mention of %q", c.name, err, c.want)
		}
	}
}

// HF tokenizers may lack [PAD] and [MASK]: the vocabulary is accepted, says what it
// lacks, and pads with the id a model config gives; "[PAD]" is then plain text, and
// the token at that id an ordinary word.
func TestVocabularyWithoutPadAndMaskPadsWithTheGivenID(t *testing.T) {
	vocab := []string{"dog", "[UNK]", "[CLS]", "[SEP]", "a", "picture", "of", "[", "]", "pad"}
	tok, err := New(vocab, BertUncased)
	if err != nil {
		t.Fatal(err)
	}
	if got := tok.Missing(); !reflect.DeepEqual(got, []string{"[PAD]", "[MASK]"}) {
		t.Fatalf("missing %v", got)
	}
	if tok.PadID() != -1 || tok.MaskID() != -1 {
		t.Fatalf("pad %d mask %d, want -1 (none)", tok.PadID(), tok.MaskID())
	}
	if err := tok.SetPadID(0); err != nil {
		t.Fatal(err)
	}
	ids, mask := tok.EncodeBatch([]string{"a picture of a dog", "a dog"}, 0, PadToLongest)
	want := [][]int64{{2, 4, 5, 6, 4, 0, 3}, {2, 4, 0, 3, 0, 0, 0}}
	if !reflect.DeepEqual(ids, want) || !reflect.DeepEqual(mask[1], []int64{1, 1, 1, 1, 0, 0, 0}) {
		t.Fatalf("ids %v mask %v, want %v", ids, mask, want)
	}
	if got := tok.Tokenize("[PAD] dog"); !reflect.DeepEqual(got, []string{"[", "pad", "]", "dog"}) {
		t.Fatalf(`"[PAD]" without a [PAD] token tokenized as %v`, got)
	}
	if got := tok.Decode([]int64{2, 4, 0, 3}, true); got != "a dog" {
		t.Fatalf("decode %q: the word at the pad id is no special token here", got)
	}

	full, err := New(bertTestVocab(), BertUncased)
	if err != nil || full.Missing() != nil {
		t.Fatalf("bert vocabulary: %v, missing %v", err, full.Missing())
	}
	if err := full.SetPadID(5); err == nil {
		t.Fatal("a vocabulary with [PAD] keeps its own pad id")
	}
	if err := tok.SetPadID(-3); err == nil {
		t.Fatal("a negative pad id")
	}
}

func TestTinyVocabularyMatchesTheTinyPreset(t *testing.T) {
	// The tiny vocabulary lives with the synthetic world, which writes it beside its models.
	tok, err := Load(filepath.Join("..", "..", "synth", "tiny_vocab.txt"))
	if err != nil {
		t.Fatal(err)
	}
	got := []int64{tok.PadID(), tok.UnkID(), tok.ClsID(), tok.SepID(), tok.MaskID(), tok.DecID(), tok.EncID()}
	if want := []int64{0, 1, 2, 3, 4, 118, 119}; !reflect.DeepEqual(got, want) || tok.VocabSize() != 118 {
		t.Fatalf("tiny ids = %v (vocab %d), want %v (vocab 118)", got, tok.VocabSize(), want)
	}
	for _, caption := range []string{
		"a picture of two dogs sitting on the grass.",
		"a red circle left of a small blue square",
		"a man's cat, playing near the water!",
		"zebras quickly jumped",
	} {
		ids := tok.Encode(caption)
		for _, id := range ids[1 : len(ids)-1] {
			if id == tok.UnkID() {
				t.Errorf("%q: tiny vocab produced [UNK] in %v", caption, ids)
			}
		}
		if got := tok.Decode(ids, true); got != caption {
			t.Errorf("Decode(Encode(%q)) = %q", caption, got)
		}
	}
}

func TestLoadTokenizerFromFilesAndDirectories(t *testing.T) {
	dir := t.TempDir()
	vocab := bertTestVocab()
	write := func(name, content string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	vocabTxt := strings.Join(vocab, "\n") + "\n"
	write("plain/vocab.txt", vocabTxt)
	write("crlf.txt", strings.ReplaceAll(vocabTxt, "\n", "\r\n"))
	write("cased/vocab.txt", vocabTxt)
	write("cased/tokenizer_config.json", `{"do_lower_case": false, "model_max_length": 512}`)
	write("added/vocab.txt", vocabTxt)
	write("added/added_tokens.json", `{"[DEC]": 900, "[ENC]": 901}`)

	var entries []string
	for i, tok := range vocab {
		entries = append(entries, `"`+strings.ReplaceAll(tok, `"`, `\"`)+`": `+strconv.Itoa(i))
	}
	vocabJSON := "{" + strings.Join(entries, ", ") + "}"
	write("json/tokenizer.json", `{"normalizer": {"type": "BertNormalizer", "lowercase": false, "strip_accents": true},
		"added_tokens": [{"id": 0, "content": "[PAD]"}, {"id": 700, "content": "[DEC]"}],
		"model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##", "vocab": `+vocabJSON+`}}`)
	write("nonorm.json", `{"model": {"vocab": `+vocabJSON+`}}`)

	cases := []struct {
		path     string
		text     string
		want     []string
		dec, enc int64
	}{
		{"plain", "Dogs", []string{"dog", "##s"}, int64(len(vocab)), int64(len(vocab)) + 1},
		{"plain/vocab.txt", "Café", []string{"cafe"}, int64(len(vocab)), int64(len(vocab)) + 1},
		{"crlf.txt", "dogs", []string{"dog", "##s"}, int64(len(vocab)), int64(len(vocab)) + 1},
		{"cased", "Dog dog", []string{"Dog", "dog"}, int64(len(vocab)), int64(len(vocab)) + 1},
		{"added", "a", []string{"a"}, 900, 901},
		{"json", "Dog Café", []string{"Dog", "[UNK]"}, 700, int64(len(vocab)) + 1},
		{"json/tokenizer.json", "Dog", []string{"Dog"}, 700, int64(len(vocab)) + 1},
		{"nonorm.json", "Dog Café", []string{"dog", "cafe"}, int64(len(vocab)), int64(len(vocab)) + 1},
	}
	for _, c := range cases {
		t.Run(c.path, func(t *testing.T) {
			tok, err := Load(filepath.Join(dir, c.path))
			if err != nil {
				t.Fatalf("LoadTokenizer: %v", err)
			}
			if got := tok.Tokenize(c.text); !reflect.DeepEqual(got, c.want) {
				t.Errorf("Tokenize(%q) = %q, want %q", c.text, got, c.want)
			}
			if tok.DecID() != c.dec || tok.EncID() != c.enc || tok.VocabSize() != len(vocab) {
				t.Errorf("dec/enc/size = %d/%d/%d, want %d/%d/%d", tok.DecID(), tok.EncID(), tok.VocabSize(), c.dec, c.enc, len(vocab))
			}
		})
	}
	// "Café" with strip_accents true but lowercase false: the cased vocab has no
	// "Cafe", so it is [UNK] above; "cafe" itself must still resolve.
	if got := mustLoad(t, filepath.Join(dir, "json")).Tokenize("café"); !reflect.DeepEqual(got, []string{"cafe"}) {
		t.Errorf("json tokenizer strip_accents: got %q", got)
	}
}

func TestLoadTokenizerErrorsNameTheProblem(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	empty := filepath.Join(dir, "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	cases := []struct{ path, want string }{
		{filepath.Join(dir, "missing.txt"), "no such file"},
		{empty, "neither vocab.txt nor tokenizer.json"},
		{write("nospecial.txt", "a\nb\n"), "has no [UNK]"},
		{write("bad.json", "{"), "parse"},
		{write("bpe.json", `{"model": {"type": "BPE", "vocab": {"a": 0}}}`), `model.type "BPE"`},
		{write("gap.json", `{"model": {"vocab": {"[PAD]": 0, "[UNK]": 5}}}`), "outside 0..1"},
		{write("clash.json", `{"model": {"vocab": {"[PAD]": 0, "[UNK]": 0}}}`), "gives id 0 to both"},
		{write("novocab.json", `{"model": {"type": "WordPiece"}}`), "model.vocab is missing"},
	}
	for _, c := range cases {
		if _, err := Load(c.path); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Load(%s): err = %v, want mention of %q", filepath.Base(c.path), err, c.want)
		}
	}
}

func mustLoad(t *testing.T, path string) *Tokenizer {
	t.Helper()
	tok, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
