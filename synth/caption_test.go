package synth

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/capfilt/capfilt/blip/tokenizer"
)

func worldTokenizer(t *testing.T) *tokenizer.Tokenizer {
	t.Helper()
	tok, err := tokenizer.New(WorldVocab(), tokenizer.BertUncased)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// captionsOfEveryKind draws n pictures and, for each, a caption of every sort the world
// writes.
func captionsOfEveryKind(n int, seed uint64) (pics []Picture, captions [][]string) {
	rng := rand.New(rand.NewPCG(seed, 0))
	for range n {
		p := RandomPicture(rng)
		wrong, _ := p.wrongCaption(rng, 0.5)
		junk, _ := junkCaption(rng)
		pics = append(pics, p)
		captions = append(captions, []string{p.CleanCaption(), p.fullCaption(rng), p.incompleteCaption(rng), wrong, junk})
	}
	return pics, captions
}

func TestEveryCaptionAndJunkTokenizesWithTheWorldVocabularyWithoutUnknown(t *testing.T) {
	tok := worldTokenizer(t)
	_, captions := captionsOfEveryKind(1500, 1)
	longest := 0
	for _, cs := range captions {
		for _, c := range cs {
			// Both as written and as BLIP's pre_caption cleans it for training.
			for _, text := range []string{c, tokenizer.PreCaption(c, 30)} {
				ids := tok.Encode(text)
				if slices.Contains(ids, tok.UnkID()) {
					t.Fatalf("%q tokenizes with [UNK]: %v", text, tok.Tokenize(text))
				}
				longest = max(longest, len(ids))
			}
		}
	}
	if longest > CaptionTokenBound {
		t.Errorf("longest caption is %d tokens, over the bound %d", longest, CaptionTokenBound)
	}
	worst := "on a checkered background, there is a little orange diamond to the left of a little orange triangle to the right of a little orange square"
	if n := len(tok.Encode(worst)); n != CaptionTokenBound {
		t.Errorf("the longest caption the grammar writes is %d tokens, the bound says %d", n, CaptionTokenBound)
	}
	// Every word the grammar writes is one token, so captions cost a token a word.
	for _, w := range append(append(slices.Clone(grammarWords), Shapes...), Colours...) {
		if got := tok.Tokenize(w); len(got) != 1 || got[0] != w {
			t.Errorf("grammar word %q tokenizes as %v", w, got)
		}
	}
	if n := len(WorldVocab()); n < 100 || n > 300 {
		t.Errorf("world vocabulary has %d tokens, want 100 to 300 for a tiny model", n)
	}
	if v := WorldVocab(); v[0] != "[PAD]" || v[1] != "[UNK]" || v[2] != "[CLS]" || v[3] != "[SEP]" || v[4] != "[MASK]" {
		t.Errorf("special tokens at %v, want the tiny preset's ids 0-4", v[:5])
	}
	if tok.DecID() != int64(len(WorldVocab())) || tok.EncID() != int64(len(WorldVocab())+1) {
		t.Errorf("[DEC] %d [ENC] %d, want the two ids after the vocabulary", tok.DecID(), tok.EncID())
	}
}

func TestGrammarCaptionsScoreAsWhatTheyAre(t *testing.T) {
	pics, captions := captionsOfEveryKind(1000, 2)
	for i, p := range pics {
		clean, full, incomplete, wrong, junk := captions[i][0], captions[i][1], captions[i][2], captions[i][3], captions[i][4]
		if s := AttributeAccuracy(p, clean); !s.Full() {
			t.Fatalf("clean caption %q of %+v scores %+v, want full", clean, p, s)
		}
		if s := AttributeAccuracy(p, full); !s.Full() {
			t.Fatalf("full variant %q (clean %q) scores %+v, want full", full, clean, s)
		}
		if s := AttributeAccuracy(p, incomplete); !s.True() || s.Full() {
			t.Fatalf("incomplete caption %q (clean %q) scores %+v, want true but not full", incomplete, clean, s)
		}
		if d := ParseCaption(incomplete); !namesEveryObjectAndTexture(p, d) {
			t.Fatalf("incomplete caption %q (clean %q) reads as %+v: want every object by size and colour, and a texture", incomplete, clean, d)
		}
		if s := AttributeAccuracy(p, wrong); s.True() || s.Mentioned == 0 {
			t.Fatalf("wrong caption %q (clean %q) scores %+v, want something false", wrong, clean, s)
		}
		if s := AttributeAccuracy(p, junk); s.Mentioned != 0 {
			t.Fatalf("junk %q scores %+v, want nothing stated", junk, s)
		}
	}
}

// namesEveryObjectAndTexture reports whether d names each of p's objects by size and
// colour, and p's background when it is textured: what keeps an incomplete caption a
// caption of its own picture (see incompleteCaption).
func namesEveryObjectAndTexture(p Picture, d Description) bool {
	if len(d.Objects) != len(p.Objects) || (p.Background.Texture != "plain" && d.Background != p.Background.Texture) {
		return false
	}
	for _, m := range d.Objects {
		if m.Size == "" || m.Colour == "" {
			return false
		}
	}
	return true
}

func TestCleanCaptionsAreShortAndNameObjectsLeftToRight(t *testing.T) {
	p := Picture{Objects: []Object{
		{Shape: "square", Colour: "blue", Size: "large", Col: 2, Row: 0},
		{Shape: "circle", Colour: "red", Size: "small", Col: 0, Row: 1},
	}, Background: Background{Texture: "striped", Tone: "gray", Orientation: "vertical"}}
	if got, want := p.CleanCaption(), "a small red circle left of a large blue square on a striped background"; got != want {
		t.Errorf("clean caption %q, want %q", got, want)
	}
	lone := Picture{Objects: []Object{{Shape: "triangle", Colour: "orange", Size: "large", Col: 0, Row: 2}},
		Background: Background{Texture: "plain", Tone: "sage"}}
	if got, want := lone.CleanCaption(), "a large orange triangle in the bottom left"; got != want {
		t.Errorf("clean caption %q, want %q", got, want)
	}
	if got := (Description{Objects: []Mention{{Colour: "orange", Shape: "cross"}}}).Text(); got != "an orange cross" {
		t.Errorf("article before a vowel: %q", got)
	}
}

func TestFullCaptionsVaryButStayTrue(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	p := Picture{Objects: []Object{
		{Shape: "square", Colour: "blue", Size: "large", Col: 2, Row: 0},
		{Shape: "circle", Colour: "red", Size: "small", Col: 0, Row: 1},
		{Shape: "cross", Colour: "white", Size: "small", Col: 1, Row: 2},
	}, Background: Background{Texture: "dotted", Tone: "gray"}}
	seen := map[string]bool{}
	for range 200 {
		c := p.fullCaption(rng)
		seen[c] = true
		if s := AttributeAccuracy(p, c); !s.Full() {
			t.Fatalf("variant %q scores %+v", c, s)
		}
	}
	if len(seen) < 20 {
		t.Errorf("200 full captions of one picture give only %d distinct texts", len(seen))
	}
	if !seen[p.CleanCaption()] {
		t.Errorf("the clean caption %q is never among the variants", p.CleanCaption())
	}
}

func TestAttributeAccuracyOfHandWrittenCaptions(t *testing.T) {
	two := Picture{Objects: []Object{
		{Shape: "circle", Colour: "red", Size: "small", Col: 0, Row: 1},
		{Shape: "square", Colour: "blue", Size: "large", Col: 2, Row: 0},
	}, Background: Background{Texture: "striped", Tone: "gray"}}
	// Full description: 3+3 object attributes, 1 relation, the texture = 8.
	lone := Picture{Objects: []Object{{Shape: "circle", Colour: "red", Size: "small", Col: 0, Row: 1}},
		Background: Background{Texture: "plain", Tone: "gray"}}
	// Full description: 3 object attributes and the cell = 4.
	for _, tc := range []struct {
		pic     Picture
		caption string
		want    AttributeScore
	}{
		{two, "a small red circle left of a large blue square on a striped background", AttributeScore{8, 8, 8, 8}},
		{two, "A large blue square, to the right of a little red circle, on a striped background.", AttributeScore{8, 8, 8, 8}},
		{two, "a small red circle below a large blue square", AttributeScore{7, 7, 7, 8}}, // also true: row 1 is below row 0
		{two, "a small red circle right of a large blue square", AttributeScore{7, 6, 6, 8}},
		{two, "a small green circle left of a large blue square", AttributeScore{7, 6, 6, 8}},
		{two, "a circle", AttributeScore{1, 1, 1, 8}},
		{two, "a red circle and a blue square", AttributeScore{4, 4, 4, 8}},
		{two, "two shapes on a dotted background", AttributeScore{2, 1, 0, 8}},
		{two, "three red circles", AttributeScore{3, 2, 2, 8}}, // a plural is one mention; the count is wrong
		{two, "a large blue square left of a small red circle", AttributeScore{7, 6, 6, 8}},
		{two, "a red circle, a blue square and a yellow triangle", AttributeScore{6, 4, 4, 8}}, // the triangle matches nothing
		{two, "IMG_2041.jpg", AttributeScore{0, 0, 0, 8}},
		{lone, "a small red circle on the left", AttributeScore{4, 4, 4, 4}},
		{lone, "on the left, a little red circle on a plain background", AttributeScore{5, 5, 4, 4}},
		{lone, "a small red circle in the top left corner", AttributeScore{4, 3, 3, 4}},
		{lone, "a red shape", AttributeScore{1, 1, 1, 4}},
		{lone, "a big blue square in the middle", AttributeScore{4, 0, 0, 4}},
	} {
		if got := AttributeAccuracy(tc.pic, tc.caption); got != tc.want {
			t.Errorf("%q: %+v, want %+v", tc.caption, got, tc.want)
		}
	}
	var sum AttributeScore
	sum.Add(AttributeAccuracy(two, "a circle"))
	sum.Add(AttributeAccuracy(two, "a small green circle left of a large blue square"))
	if sum.Precision() != 7.0/8 || sum.Coverage() != 7.0/16 {
		t.Errorf("summed %+v: precision %g coverage %g, want 7/8 and 7/16", sum, sum.Precision(), sum.Coverage())
	}
}

func TestParserReadsPlacesRelationsAndCounts(t *testing.T) {
	for _, tc := range []struct {
		caption string
		want    string // the description, canonically worded
	}{
		{"in the top right corner, a big yellow diamond", "a large yellow diamond in the top right"},
		{"a cross at the bottom on a checkered background", "a cross at the bottom on a checkered background"},
		{"a red circle to the left of a blue square over a green cross", "a red circle left of a blue square above a green cross"},
		{"three shapes on a dotted background", "three shapes on a dotted background"},
		{"there is a small shape under a purple shape", "a small shape below a purple shape"},
	} {
		if got := ParseCaption(tc.caption).Text(); got != tc.want {
			t.Errorf("%q parses as %q, want %q", tc.caption, got, tc.want)
		}
	}
	if d := ParseCaption(strings.Repeat("a red circle ", 12)); len(d.Objects) != 12 {
		t.Errorf("twelve mentions read as %d", len(d.Objects))
	}
}
