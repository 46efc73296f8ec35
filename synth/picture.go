package synth

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
)

// The world's attribute values. Each list is short so that a model of a few hundred
// thousand parameters can learn every value from a few thousand images, and every value
// is a single token of the world vocabulary.
var (
	Shapes   = []string{"circle", "square", "triangle", "diamond", "cross"}
	Colours  = []string{"red", "green", "blue", "yellow", "purple", "orange", "white", "black"}
	Sizes    = []string{"small", "large"}
	Textures = []string{"plain", "striped", "checkered", "dotted"}
	// Relations are said of two objects: "A left of B". Each holds by the objects' grid
	// cells, so a scene with A in the top left and B in the bottom right makes both
	// "A left of B" and "A above B" true.
	Relations = []string{"left of", "right of", "above", "below"}
)

// GridSize is the side of the layout grid: every object sits in its own cell of a 3×3
// grid, so "left of" and "top left" are never a matter of a pixel, and at 48 px with
// 16-px patches each object is one ViT patch.
const GridSize = 3

// Object is one shape of a picture.
type Object struct {
	Shape  string `json:"shape"`
	Colour string `json:"colour"`
	Size   string `json:"size"`
	// Col and Row are the object's grid cell, 0..2 from the left and from the top.
	Col int `json:"col"`
	Row int `json:"row"`
	// JitterX and JitterY move the object off its cell's centre, as a share (−1..1) of the
	// room its size leaves, so no two images of one description are pixel-equal.
	JitterX float64 `json:"jitter_x"`
	JitterY float64 `json:"jitter_y"`
}

// Background is what lies behind the objects. Only the texture is an attribute captions
// name; the tone and the stripes' direction vary so that texture is learnt, not a colour.
type Background struct {
	Texture     string `json:"texture"`
	Tone        string `json:"tone"`
	Orientation string `json:"orientation,omitempty"` // stripes: horizontal, vertical or diagonal
}

// Picture is what one image of the synthetic world shows: one to three objects, each in
// its own grid cell, on a plain or textured background. It determines the image (Render)
// and every true statement about it.
type Picture struct {
	Objects    []Object   `json:"objects"`
	Background Background `json:"background"`
}

// tones are the backgrounds' base colours: muted mid-tones, far from every object colour
// even after JPEG, so an object never melts into its background.
var tones = map[string][3]uint8{
	"gray": {128, 128, 128}, "sand": {176, 158, 120}, "slate": {96, 120, 140},
	"sage": {124, 142, 108}, "mauve": {146, 120, 136},
}

var toneNames = []string{"gray", "sand", "slate", "sage", "mauve"}

var orientations = []string{"horizontal", "vertical", "diagonal"}

// objectColours are saturated or extreme, pairwise far apart in RGB.
var objectColours = map[string][3]uint8{
	"red": {215, 35, 35}, "green": {40, 165, 65}, "blue": {40, 75, 215}, "yellow": {240, 210, 40},
	"purple": {135, 55, 185}, "orange": {245, 135, 25}, "white": {245, 245, 245}, "black": {20, 20, 20},
}

// objectCounts is how many pictures show one, two and three objects.
var objectCounts = []float64{0.3, 0.4, 0.3}

// textureWeights: plain backgrounds are the most common, as on the web.
var textureWeights = []float64{0.4, 0.2, 0.2, 0.2}

// RandomPicture draws a picture: the number of objects, their distinct cells, attributes
// and jitter, and the background.
func RandomPicture(rng *rand.Rand) Picture {
	n := 1 + pickWeighted(rng, objectCounts)
	cells := rng.Perm(GridSize * GridSize)[:n]
	p := Picture{Background: Background{Texture: Textures[pickWeighted(rng, textureWeights)], Tone: toneNames[rng.IntN(len(toneNames))]}}
	if p.Background.Texture == "striped" {
		p.Background.Orientation = orientations[rng.IntN(len(orientations))]
	}
	for _, c := range cells {
		p.Objects = append(p.Objects, Object{
			Shape: Shapes[rng.IntN(len(Shapes))], Colour: Colours[rng.IntN(len(Colours))], Size: Sizes[rng.IntN(len(Sizes))],
			Col: c % GridSize, Row: c / GridSize,
			JitterX: roundTo(2*rng.Float64()-1, 100), JitterY: roundTo(2*rng.Float64()-1, 100),
		})
	}
	return p
}

func pickWeighted(rng *rand.Rand, weights []float64) int {
	var sum float64
	for _, w := range weights {
		sum += w
	}
	x := rng.Float64() * sum
	for i, w := range weights {
		if x < w {
			return i
		}
		x -= w
	}
	return len(weights) - 1
}

func roundTo(x, scale float64) float64 { return math.Round(x*scale) / scale }

// Holds reports whether relation rel is true of objects a and b, in that order ("a left of b").
func (p Picture) Holds(rel string, a, b int) bool {
	oa, ob := p.Objects[a], p.Objects[b]
	switch rel {
	case "left of":
		return oa.Col < ob.Col
	case "right of":
		return oa.Col > ob.Col
	case "above":
		return oa.Row < ob.Row
	case "below":
		return oa.Row > ob.Row
	}
	return false
}

// dominantRelation is the relation a caption states of a and b: along the axis on which
// they are further apart, horizontal on a tie (vertical when preferVertical).
func (p Picture) dominantRelation(a, b int, preferVertical bool) string {
	oa, ob := p.Objects[a], p.Objects[b]
	dx, dy := ob.Col-oa.Col, ob.Row-oa.Row
	horizontal := abs(dx) > abs(dy) || (abs(dx) == abs(dy) && !preferVertical)
	switch {
	case horizontal && dx > 0:
		return "left of"
	case horizontal:
		return "right of"
	case dy > 0:
		return "above"
	}
	return "below"
}

// canonicalOrder is the order the clean caption names objects in: left to right, then
// top to bottom.
func (p Picture) canonicalOrder() []int {
	order := make([]int, len(p.Objects))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		oa, ob := p.Objects[a], p.Objects[b]
		if oa.Col != ob.Col {
			return oa.Col - ob.Col
		}
		return oa.Row - ob.Row
	})
	return order
}

// Validate checks that a picture (read back from JSON, say) is one the world can draw.
func (p Picture) Validate() error {
	if len(p.Objects) < 1 || len(p.Objects) > GridSize*GridSize {
		return fmt.Errorf("picture: %d objects", len(p.Objects))
	}
	if _, ok := tones[p.Background.Tone]; !ok {
		return fmt.Errorf("picture: background tone %q unknown", p.Background.Tone)
	}
	if !slices.Contains(Textures, p.Background.Texture) {
		return fmt.Errorf("picture: background texture %q unknown", p.Background.Texture)
	}
	seen := map[int]bool{}
	for i, o := range p.Objects {
		switch {
		case !slices.Contains(Shapes, o.Shape):
			return fmt.Errorf("picture: object %d: shape %q unknown", i, o.Shape)
		case !slices.Contains(Colours, o.Colour):
			return fmt.Errorf("picture: object %d: colour %q unknown", i, o.Colour)
		case !slices.Contains(Sizes, o.Size):
			return fmt.Errorf("picture: object %d: size %q unknown", i, o.Size)
		case o.Col < 0 || o.Col >= GridSize || o.Row < 0 || o.Row >= GridSize:
			return fmt.Errorf("picture: object %d: cell (%d,%d) outside the %d×%d grid", i, o.Col, o.Row, GridSize, GridSize)
		case seen[o.Row*GridSize+o.Col]:
			return fmt.Errorf("picture: object %d shares cell (%d,%d)", i, o.Col, o.Row)
		case math.Abs(o.JitterX) > 1 || math.Abs(o.JitterY) > 1:
			return fmt.Errorf("picture: object %d: jitter (%g,%g) outside −1..1", i, o.JitterX, o.JitterY)
		}
		seen[o.Row*GridSize+o.Col] = true
	}
	return nil
}
