package synth

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
)

// CaptionKind is what a web caption is, in truth.
type CaptionKind string

// The kinds of web caption. Full and incomplete captions are true; the other three are
// the injected noise a filter should reject.
const (
	// KindFull states every attribute of the full description, in varied words.
	KindFull CaptionKind = "full"
	// KindIncomplete is true but leaves attributes out, as alt text often does ("a
	// small red shape and a large blue shape on a striped background").
	KindIncomplete CaptionKind = "incomplete"
	// KindWrongAttribute is a true caption with one attribute changed: a colour, shape,
	// size, place, relation or texture.
	KindWrongAttribute CaptionKind = "wrong_attribute"
	// KindOtherImage is a true caption of another image of the set.
	KindOtherImage CaptionKind = "other_image"
	// KindJunk is alt-text junk: file names, shop slogans, "click here", near-empty text.
	KindJunk CaptionKind = "junk"
)

// CaptionKinds lists every kind, true ones first.
var CaptionKinds = []CaptionKind{KindFull, KindIncomplete, KindWrongAttribute, KindOtherImage, KindJunk}

// NoiseKinds lists the kinds of injected noise.
var NoiseKinds = []CaptionKind{KindWrongAttribute, KindOtherImage, KindJunk}

// Noisy reports whether k is injected noise.
func (k CaptionKind) Noisy() bool { return slices.Contains(NoiseKinds, k) }

// NoiseMix is how the noisy web captions split over the noise kinds. The shares are
// normalised, so only their ratios matter.
type NoiseMix struct {
	WrongAttribute float64 `json:"wrong_attribute"`
	OtherImage     float64 `json:"other_image"`
	Junk           float64 `json:"junk"`
}

// DefaultNoiseMix leans toward the hard kind: a wrong attribute is what a filter must
// look at the image closely to catch; junk any language model spots.
func DefaultNoiseMix() NoiseMix { return NoiseMix{WrongAttribute: 0.4, OtherImage: 0.3, Junk: 0.3} }

// ParseNoiseMix reads "wrong_attribute=0.4,other_image=0.3,junk=0.3" (dashes or
// underscores; kinds left out get 0).
func ParseNoiseMix(s string) (NoiseMix, error) {
	var m NoiseMix
	for part := range strings.SplitSeq(s, ",") {
		name, value, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return m, fmt.Errorf("noise mix %q: %q is not kind=share", s, part)
		}
		share, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil || math.IsNaN(share) || math.IsInf(share, 0) {
			return m, fmt.Errorf("noise mix %q: share %q of %s is not a number", s, value, name)
		}
		switch strings.ReplaceAll(strings.TrimSpace(name), "-", "_") {
		case string(KindWrongAttribute):
			m.WrongAttribute = share
		case string(KindOtherImage):
			m.OtherImage = share
		case string(KindJunk):
			m.Junk = share
		default:
			return m, fmt.Errorf("noise mix %q: unknown kind %q (want wrong_attribute, other_image or junk)", s, name)
		}
	}
	return m, m.validate()
}

func (m NoiseMix) validate() error {
	if m.WrongAttribute < 0 || m.OtherImage < 0 || m.Junk < 0 || m.WrongAttribute+m.OtherImage+m.Junk <= 0 {
		return fmt.Errorf("noise mix %+v: shares must be 0 or more, and not all 0", m)
	}
	return nil
}

// String writes m as ParseNoiseMix reads it.
func (m NoiseMix) String() string {
	return fmt.Sprintf("wrong_attribute=%g,other_image=%g,junk=%g", m.WrongAttribute, m.OtherImage, m.Junk)
}

// assignKinds gives each of n web captions its kind with exact quotas (largest
// remainders), in a seeded random order: the rates are known to one caption, not only
// in expectation.
func assignKinds(n int, noise, incomplete float64, mix NoiseMix, rng *rand.Rand) []CaptionKind {
	sum := mix.WrongAttribute + mix.OtherImage + mix.Junk
	shares := []float64{1 - noise - incomplete, incomplete,
		noise * mix.WrongAttribute / sum, noise * mix.OtherImage / sum, noise * mix.Junk / sum}
	counts := make([]int, len(shares))
	type rem struct {
		kind int
		frac float64
	}
	var rems []rem
	left := n
	for i, s := range shares {
		exact := s * float64(n)
		counts[i] = int(exact)
		left -= counts[i]
		rems = append(rems, rem{i, exact - float64(counts[i])})
	}
	slices.SortStableFunc(rems, func(a, b rem) int {
		switch {
		case a.frac > b.frac:
			return -1
		case a.frac < b.frac:
			return 1
		}
		return 0
	})
	for i := 0; i < left; i++ {
		counts[rems[i%len(rems)].kind]++
	}
	kinds := make([]CaptionKind, 0, n)
	for i, c := range counts {
		for range c {
			kinds = append(kinds, CaptionKinds[i])
		}
	}
	rng.Shuffle(len(kinds), func(i, j int) { kinds[i], kinds[j] = kinds[j], kinds[i] })
	return kinds
}

// wrongCaption is a true caption of p (full, or incomplete with probability
// incompleteShare) with one stated attribute changed so that it is false, and what was
// changed ("colour: red -> blue").
func (p Picture) wrongCaption(rng *rand.Rand, incompleteShare float64) (string, string) {
	w := wording{rng}
	for range 100 {
		var d Description
		if rng.Float64() < incompleteShare {
			d = ParseCaption(p.incompleteCaption(rng))
		} else {
			d = p.describe(rng.Perm(len(p.Objects)), w)
		}
		d, detail := changeAttribute(d, rng)
		if detail == "" {
			continue
		}
		text := d.text(w)
		if s := AttributeAccuracy(p, text); s.Mentioned > 0 && !s.True() {
			return text, detail
		}
	}
	// Never reached in practice. A colour no object has can match no object, so the full
	// description with it is false whatever the matching.
	d := p.describe(p.canonicalOrder(), w)
	from := d.Objects[0].Colour
	for _, c := range Colours {
		if !slices.ContainsFunc(p.Objects, func(o Object) bool { return o.Colour == c }) {
			d.Objects[0].Colour = c
			break
		}
	}
	return d.text(w), fmt.Sprintf("colour: %s -> %s", from, d.Objects[0].Colour)
}

// changeAttribute changes one attribute d states to another value; detail is "" when
// d states nothing to change.
func changeAttribute(d Description, rng *rand.Rand) (Description, string) {
	type slot struct {
		what string
		cur  *string
		vals []string
	}
	d.Objects = append([]Mention(nil), d.Objects...)
	d.Relations = append([]string(nil), d.Relations...)
	var slots []slot
	for i := range d.Objects {
		m := &d.Objects[i]
		for _, s := range []slot{{"size", &m.Size, Sizes}, {"colour", &m.Colour, Colours}, {"shape", &m.Shape, Shapes}, {"cell", &m.Cell, allCells()}} {
			if *s.cur != "" {
				slots = append(slots, s)
			}
		}
	}
	for i := range d.Relations {
		if d.Relations[i] != "" {
			slots = append(slots, slot{"relation", &d.Relations[i], Relations})
		}
	}
	if d.Background != "" {
		slots = append(slots, slot{"background", &d.Background, Textures})
	}
	if len(slots) == 0 {
		return d, ""
	}
	s := slots[rng.IntN(len(slots))]
	from := *s.cur
	to := from
	if s.what == "relation" {
		to = map[string]string{"left of": "right of", "right of": "left of", "above": "below", "below": "above"}[from]
	}
	for to == from {
		to = s.vals[rng.IntN(len(s.vals))]
	}
	*s.cur = to
	return d, fmt.Sprintf("%s: %s -> %s", s.what, from, to)
}

func allCells() []string {
	var cells []string
	for row := range GridSize {
		for col := range GridSize {
			cells = append(cells, CellName(col, row))
		}
	}
	return cells
}

// Alt-text junk, as scraped pages have it: file names, shop and page furniture, and
// near-empty text. Every word is in the world vocabulary, and anything else (digits,
// letters of hex names) tokenises into its pieces, never into [UNK].
var (
	junkFileNames = []string{"IMG_%04d.jpg", "DSC%05d.JPG", "DSC_%04d.jpg", "image%d.png", "pic_%d.jpeg",
		"photo (%d).jpg", "untitled-%d.png", "screenshot %d", "final_final_v%d.png", "thumbnail_%d.gif", "%08x.jpg"}
	junkSlogans = []string{"free shipping on all orders", "buy now", "best price online", "hot deal - 50% off today",
		"new in shop", "add to cart", "sale! order today", "click here for more", "view more", "download hd wallpaper",
		"stock photo", "sign up today", "click here", "shop now", "best seller", "limited offer", "home page", "free download"}
	junkEmpty = []string{"-", "image", "untitled", "null", "n/a", "...", "photo", "default", "thumbnail", "logo",
		"banner", "product image", "item", "copy", "img", "?"}
)

// junkCaption draws alt-text junk and names its sort: file_name, slogan or empty.
func junkCaption(rng *rand.Rand) (string, string) {
	switch rng.IntN(3) {
	case 0:
		return fmt.Sprintf(junkFileNames[rng.IntN(len(junkFileNames))], rng.IntN(100000)), "file_name"
	case 1:
		return junkSlogans[rng.IntN(len(junkSlogans))], "slogan"
	}
	return junkEmpty[rng.IntN(len(junkEmpty))], "empty"
}
