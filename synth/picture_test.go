package synth

import (
	"math/rand/v2"
	"testing"

	"github.com/capfilt/capfilt/imageproc"
)

// pixelAt decodes coded image bytes with the pipeline's decoder and returns pixel (x, y).
func pixelAt(t *testing.T, img *imageproc.RGBImage, x, y int) [3]int {
	t.Helper()
	i := 3 * (y*img.Width + x)
	return [3]int{int(img.Pix[i]), int(img.Pix[i+1]), int(img.Pix[i+2])}
}

// near reports whether got is within tol of want in every channel.
func near(got [3]int, want [3]uint8, tol int) bool {
	for c := range 3 {
		if abs(got[c]-int(want[c])) > tol {
			return false
		}
	}
	return true
}

// cellCentre is the middle pixel of a grid cell, from the cell alone: where a caption
// that places an object in that cell says the object is.
func cellCentre(cell string, size int) (x, y int) {
	for row := range GridSize {
		for col := range GridSize {
			if CellName(col, row) == cell {
				x0, x1 := cellBounds(col, size)
				y0, y1 := cellBounds(row, size)
				return (x0 + x1) / 2, (y0 + y1) / 2
			}
		}
	}
	panic("no cell " + cell)
}

func TestCodedImagesShowTheCaptionedColourWhereTheCaptionPlacesIt(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	checked := 0
	for n := 0; checked < 60; n++ {
		p := RandomPicture(rng)
		if len(p.Objects) != 1 {
			continue
		}
		// Read the cell and colour from the clean caption's words, not from the picture.
		d := ParseCaption(p.CleanCaption())
		if len(d.Objects) != 1 || d.Objects[0].Cell == "" || d.Objects[0].Colour == "" {
			t.Fatalf("%q parses as %+v", p.CleanCaption(), d)
		}
		size := []int{48, 96}[checked%2]
		x, y := cellCentre(d.Objects[0].Cell, size)
		for _, format := range []string{"png", "jpg"} {
			data, err := encodeImage(p.Render(size), format, 80)
			if err != nil {
				t.Fatal(err)
			}
			img, _, err := imageproc.Decode(data, imageproc.ImageLimits{})
			if err != nil {
				t.Fatal(err)
			}
			tol := 0
			if format == "jpg" {
				tol = 60 // chroma subsampling over a 7-pixel object
			}
			if got := pixelAt(t, img, x, y); !near(got, objectColours[d.Objects[0].Colour], tol) {
				t.Errorf("%s %q: pixel (%d,%d) is %v, want %s %v", format, p.CleanCaption(), x, y, got, d.Objects[0].Colour, objectColours[d.Objects[0].Colour])
			}
		}
		checked++
	}
}

func TestEveryObjectIsDrawnInItsCellAndEmptyCellsShowBackground(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 200 {
		p := RandomPicture(rng)
		img := p.Render(48)
		full := map[int]bool{}
		for i, o := range p.Objects {
			full[o.Row*GridSize+o.Col] = true
			x, y := p.Centre(i, 48)
			x0, x1 := cellBounds(o.Col, 48)
			y0, y1 := cellBounds(o.Row, 48)
			h := halfExtent(o.Size, 16)
			if x-h < x0 || x+h >= x1 || y-h < y0 || y+h >= y1 {
				t.Fatalf("object %+v reaches outside its cell: centre (%d,%d), half-extent %d", o, x, y, h)
			}
			if got := img.RGBAAt(x, y); got != rgba(objectColours[o.Colour]) {
				t.Fatalf("%q: object %d centre (%d,%d) is %v", p.CleanCaption(), i, x, y, got)
			}
		}
		base, dark := rgba(tones[p.Background.Tone]), rgba([3]uint8{tones[p.Background.Tone][0] - 40, tones[p.Background.Tone][1] - 40, tones[p.Background.Tone][2] - 40})
		for cell := range GridSize * GridSize {
			if full[cell] {
				continue
			}
			x0, x1 := cellBounds(cell%GridSize, 48)
			y0, y1 := cellBounds(cell/GridSize, 48)
			for y := y0; y < y1; y++ {
				for x := x0; x < x1; x++ {
					if c := img.RGBAAt(x, y); c != base && c != dark {
						t.Fatalf("%q: empty cell %d pixel (%d,%d) is %v, not the background", p.CleanCaption(), cell, x, y, c)
					}
				}
			}
		}
	}
}

func TestShapesDifferInThePixelsThatNameThem(t *testing.T) {
	// A large object in the middle cell of a 48-px image: centre (24,24), half-extent 6.
	at := func(shape string, dx, dy int) bool {
		p := Picture{Objects: []Object{{Shape: shape, Colour: "red", Size: "large", Col: 1, Row: 1}},
			Background: Background{Texture: "plain", Tone: "gray"}}
		return p.Render(48).RGBAAt(24+dx, 24+dy) == rgba(objectColours["red"])
	}
	for _, tc := range []struct {
		name   string
		dx, dy int
		want   map[string]bool
	}{
		{"corner region (5,5)", 5, 5, map[string]bool{"square": true, "circle": false, "diamond": false, "cross": false, "triangle": true}},
		{"top edge (0,-6)", 0, -6, map[string]bool{"square": false, "circle": true, "diamond": true, "cross": true, "triangle": true}},
		{"upper flank (-4,-4)", -4, -4, map[string]bool{"square": true, "circle": true, "diamond": false, "cross": false, "triangle": false}},
		{"arm (6,0)", 6, 0, map[string]bool{"square": false, "circle": true, "diamond": true, "cross": true, "triangle": false}},
	} {
		for shape, want := range tc.want {
			if got := at(shape, tc.dx, tc.dy); got != want {
				t.Errorf("%s at %s: drawn %v, want %v", shape, tc.name, got, want)
			}
		}
	}
}

func TestTexturedBackgroundsAreTexturedAndPlainOnesAreNot(t *testing.T) {
	for _, tex := range Textures {
		p := Picture{Objects: []Object{{Shape: "circle", Colour: "red", Size: "small", Col: 0, Row: 0}},
			Background: Background{Texture: tex, Tone: "sand", Orientation: "diagonal"}}
		img := p.Render(48)
		dark := 0
		for y := 16; y < 48; y++ {
			for x := 16; x < 48; x++ {
				if img.RGBAAt(x, y) != rgba(tones["sand"]) {
					dark++
				}
			}
		}
		if (dark == 0) != (tex == "plain") {
			t.Errorf("%s background: %d of 1024 empty-area pixels in the second tone", tex, dark)
		}
	}
}

func TestRelationsHoldByGridCells(t *testing.T) {
	p := Picture{Objects: []Object{{Col: 0, Row: 0}, {Col: 2, Row: 1}, {Col: 2, Row: 2}}}
	for _, tc := range []struct {
		rel  string
		a, b int
		want bool
	}{
		{"left of", 0, 1, true}, {"right of", 1, 0, true}, {"above", 0, 1, true}, {"below", 2, 1, true},
		{"left of", 1, 2, false}, {"right of", 1, 2, false}, {"above", 2, 0, false},
	} {
		if got := p.Holds(tc.rel, tc.a, tc.b); got != tc.want {
			t.Errorf("%d %s %d: %v", tc.a, tc.rel, tc.b, got)
		}
	}
	if r := p.dominantRelation(0, 1, false); r != "left of" {
		t.Errorf("dominant relation of (0,0) to (2,1): %s", r)
	}
	if r := p.dominantRelation(1, 2, false); r != "above" {
		t.Errorf("dominant relation of (2,1) to (2,2): %s", r)
	}
}
