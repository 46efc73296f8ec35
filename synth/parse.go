package synth

import (
	"slices"
	"strings"
	"unicode"
)

// The words the parser reads, mapped to the world's values. They are the grammar's
// words and a few obvious others, so a captioner's near-miss ("tiny", "centre") counts
// for what it says.
var (
	parseSizes = map[string]string{"small": "small", "little": "small", "tiny": "small",
		"large": "large", "big": "large", "huge": "large"}
	parseTextures = map[string]string{"plain": "plain", "striped": "striped", "stripy": "striped",
		"checkered": "checkered", "checked": "checkered", "chequered": "checkered", "dotted": "dotted", "spotted": "dotted"}
	parseNumbers   = map[string]int{"one": 1, "two": 2, "three": 3, "four": 4, "five": 5}
	parsePositions = map[string]bool{"top": true, "bottom": true, "left": true, "right": true,
		"middle": true, "center": true, "centre": true, "corner": true}
)

// captionWords lower-cases text and splits it into words of letters and digits; every
// other character separates words.
func captionWords(text string) []string {
	return strings.FieldsFunc(strings.ToLower(text), func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) })
}

// shapeWord reads a shape noun, singular or plural.
func shapeWord(w string) (shape string, plural bool) {
	if slices.Contains(Shapes, w) {
		return w, false
	}
	for _, s := range Shapes {
		if w == s+"s" || w == s+"es" {
			return s, true
		}
	}
	return "", false
}

// ParseCaption reads what a caption states about a picture. It reads the grammar's
// captions exactly and other text leniently: words it does not know are skipped, a size
// or colour with no noun after it is a mention of an unnamed shape, a relation ("left
// of", "above", "under") links the mentions on either side of it, a place ("in the top
// left", "at the bottom") belongs to the mention before it (or after it, when it comes
// first), a texture word before "background" names the background, and a number before
// "shapes" is a count. A plural noun ("two red circles") is read as one mention.
func ParseCaption(text string) Description {
	words := captionWords(text)
	var d Description
	var pend Mention
	hasPend := false
	pendRel, pendCell, texture, number := "", "", "", 0
	emit := func() {
		if len(d.Objects) > 0 {
			d.Relations = append(d.Relations, pendRel)
		}
		if pend.Cell == "" {
			pend.Cell = pendCell
		}
		d.Objects = append(d.Objects, pend)
		pend, hasPend, pendRel, pendCell = Mention{}, false, "", ""
	}
	for i := 0; i < len(words); i++ {
		w := words[i]
		next := ""
		if i+1 < len(words) {
			next = words[i+1]
		}
		if s, ok := parseSizes[w]; ok {
			pend.Size, hasPend = s, true
			continue
		}
		if slices.Contains(Colours, w) {
			pend.Colour, hasPend = w, true
			continue
		}
		if s, plural := shapeWord(w); s != "" {
			pend.Shape = s
			emit()
			if plural && number > 0 {
				d.Count, number = number, 0
			}
			continue
		}
		switch {
		case w == "shape" || w == "object":
			emit()
		case w == "shapes" || w == "objects":
			if hasPend {
				emit()
			}
			if number > 0 {
				d.Count, number = number, 0
			}
		case parseNumbers[w] > 0:
			number = parseNumbers[w]
		case (w == "left" || w == "right") && next == "of":
			if hasPend {
				emit()
			}
			pendRel = w + " of"
			i++
		case w == "above" || w == "over":
			if hasPend {
				emit()
			}
			pendRel = "above"
		case w == "below" || w == "under" || w == "beneath":
			if hasPend {
				emit()
			}
			pendRel = "below"
		case parsePositions[w]:
			j := i
			for j < len(words) && parsePositions[words[j]] {
				j++
			}
			if cell := cellFromWords(words[i:j]); cell != "" {
				if last := len(d.Objects) - 1; last >= 0 && !hasPend && d.Objects[last].Cell == "" {
					d.Objects[last].Cell = cell
				} else {
					pendCell = cell
				}
			}
			i = j - 1
		case parseTextures[w] != "":
			texture = parseTextures[w]
		case w == "background":
			if texture != "" {
				d.Background = texture
			}
			texture = ""
		}
	}
	if hasPend {
		emit()
	}
	return d
}

// cellFromWords reads a cell from place words: "top left", "top", "left", "middle".
func cellFromWords(words []string) string {
	col, row, said := 1, 1, false
	for _, w := range words {
		switch w {
		case "top":
			row, said = 0, true
		case "bottom":
			row, said = 2, true
		case "left":
			col, said = 0, true
		case "right":
			col, said = 2, true
		case "middle", "center", "centre":
			said = true
		}
	}
	if !said {
		return ""
	}
	return CellName(col, row)
}

// AttributeScore measures what captions state about their pictures. A caption's
// attributes are the size, colour, shape and cell of each object it mentions, each
// relation it states between two mentioned objects, the background texture it names
// and the count of shapes it gives.
//
// Mentioned counts the attributes the caption states and Correct those that are true
// of the picture; Precision = Correct / Mentioned is the share of what the caption says
// that is right. Total counts the attributes of the picture's full description (the
// clean caption): size, colour and shape of every object, one relation per object after
// the first, the cell of a lone object, and the texture of a textured background; a
// plain background and the cells of several objects are true when said but need not be.
// Covered counts those the caption states correctly, and Coverage = Covered / Total is
// how much of the picture it tells. A full true caption scores 1 and 1; "a circle" of a
// lone small red circle on the left scores precision 1, coverage 1/4; a caption with the
// wrong colour scores below 1 in both.
//
// Mentions are matched to objects one to one (a mention may match none) in the way
// that makes the most attributes correct, so the order a caption names objects in does
// not matter. Scores add up over captions (Add), so a set's Precision and Coverage are
// micro-averages.
type AttributeScore struct {
	Mentioned int `json:"mentioned"`
	Correct   int `json:"correct"`
	Covered   int `json:"covered"`
	Total     int `json:"total"`
}

// Precision is Correct / Mentioned, 0 when the caption states nothing.
func (s AttributeScore) Precision() float64 { return ratio(s.Correct, s.Mentioned) }

// Coverage is Covered / Total.
func (s AttributeScore) Coverage() float64 { return ratio(s.Covered, s.Total) }

// True reports a caption that states something and nothing false.
func (s AttributeScore) True() bool { return s.Mentioned > 0 && s.Correct == s.Mentioned }

// Full reports a true caption that states every attribute of the full description.
func (s AttributeScore) Full() bool { return s.True() && s.Covered == s.Total }

// Add adds o's counts to s.
func (s *AttributeScore) Add(o AttributeScore) {
	s.Mentioned += o.Mentioned
	s.Correct += o.Correct
	s.Covered += o.Covered
	s.Total += o.Total
}

func ratio(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// AttributeAccuracy scores caption against p (see AttributeScore).
func AttributeAccuracy(p Picture, caption string) AttributeScore {
	return p.Score(ParseCaption(caption))
}

// maxAligned bounds the mentions the matching tries to place; a caption naming more
// than eight objects of a picture of at most three is wrong about the rest anyway.
const maxAligned = 8

// Score scores description d against p (see AttributeScore).
func (p Picture) Score(d Description) AttributeScore {
	n := len(p.Objects)
	total := 4*n - 1
	if n == 1 {
		total++
	}
	if p.Background.Texture != "plain" {
		total++
	}
	best := AttributeScore{Correct: -1}
	align := make([]int, len(d.Objects))
	used := make([]bool, n)
	var try func(k int)
	try = func(k int) {
		if k == len(align) {
			s := p.scoreAligned(d, align)
			if s.Correct > best.Correct || (s.Correct == best.Correct && s.Covered > best.Covered) {
				best = s
			}
			return
		}
		align[k] = -1
		try(k + 1)
		if k >= maxAligned {
			return
		}
		for o := range n {
			if !used[o] {
				used[o], align[k] = true, o
				try(k + 1)
				used[o] = false
			}
		}
	}
	try(0)
	best.Total = total
	return best
}

// scoreAligned scores d with mention k matched to object align[k] (−1: to none).
func (p Picture) scoreAligned(d Description, align []int) AttributeScore {
	var s AttributeScore
	n := len(p.Objects)
	check := func(said, truth string, covers bool) {
		if said == "" {
			return
		}
		s.Mentioned++
		if said == truth {
			s.Correct++
			if covers {
				s.Covered++
			}
		}
	}
	for k, m := range d.Objects {
		if align[k] < 0 {
			s.Mentioned += countSaid(m.Size, m.Colour, m.Shape, m.Cell)
			continue
		}
		o := p.Objects[align[k]]
		check(m.Size, o.Size, true)
		check(m.Colour, o.Colour, true)
		check(m.Shape, o.Shape, true)
		check(m.Cell, CellName(o.Col, o.Row), n == 1)
	}
	pairs := map[[2]int]bool{}
	for k, rel := range d.Relations {
		if rel == "" {
			continue
		}
		s.Mentioned++
		a, b := align[k], align[k+1]
		if a >= 0 && b >= 0 && p.Holds(rel, a, b) {
			s.Correct++
			pairs[[2]int{min(a, b), max(a, b)}] = true
		}
	}
	s.Covered += min(len(pairs), n-1)
	check(d.Background, p.Background.Texture, p.Background.Texture != "plain")
	if d.Count > 0 {
		s.Mentioned++
		if d.Count == n {
			s.Correct++
		}
	}
	return s
}

func countSaid(fields ...string) int {
	n := 0
	for _, f := range fields {
		if f != "" {
			n++
		}
	}
	return n
}
