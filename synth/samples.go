package synth

import (
	"archive/tar"
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
)

//go:embed tiny_vocab.txt
var tinyVocab string

// TinyVocab is the WordPiece vocabulary of blip.Tiny models: BERT's special tokens, the
// words of the sample scenes, punctuation, letters and letter pieces. Every word a sample
// caption uses is in it.
func TinyVocab() []string { return strings.Split(strings.TrimSpace(tinyVocab), "\n") }

// Scene is what one sample image shows: one shape on a plain background.
type Scene struct {
	Shape    string // circle, square or triangle
	Colour   string // red, green, blue, yellow, black or white
	Position string // left, right, top, bottom or middle
	Large    bool
}

var (
	shapeNames  = []string{"circle", "square", "triangle"}
	colourNames = []string{"red", "green", "blue", "yellow", "black", "white"}
	positions   = []string{"left", "right", "top", "bottom", "middle"}
	colours     = map[string]color.RGBA{
		"red": {220, 30, 30, 255}, "green": {30, 170, 60, 255}, "blue": {40, 70, 220, 255},
		"yellow": {240, 210, 40, 255}, "black": {15, 15, 15, 255}, "white": {245, 245, 245, 255},
	}
	backgrounds = []color.RGBA{{120, 120, 120, 255}, {90, 140, 170, 255}, {160, 130, 90, 255}}
)

// Caption is the scene's true caption, in words of TinyVocab.
func (s Scene) Caption() string {
	size := "small"
	if s.Large {
		size = "large"
	}
	if s.Position == "middle" {
		return fmt.Sprintf("a %s %s %s in the middle", size, s.Colour, s.Shape)
	}
	return fmt.Sprintf("a %s %s %s on the %s", size, s.Colour, s.Shape, s.Position)
}

// SampleOptions shape the sample shards.
type SampleOptions struct {
	// PerShard is how many samples each shard holds (default 16).
	PerShard int
	// Width and Height of the images (default 96×96).
	Width, Height int
	// MismatchRate is the share of samples whose caption describes another scene.
	MismatchRate float64
	// CorruptRate is the share of samples whose image bytes are cut short, so the worker
	// has bad samples to count and skip.
	CorruptRate float64
	// Seed makes the shards reproducible.
	Seed uint64
}

// WriteSampleShards writes n WebDataset tars, DIR/00000.tar … in img2dataset's layout:
// KEY.jpg or KEY.png (alternating), KEY.txt (the web caption) and KEY.json (with the
// truth: the scene and whether the caption matches). It returns the tar paths.
func WriteSampleShards(dir string, n int, o SampleOptions) ([]string, error) {
	if o.PerShard <= 0 {
		o.PerShard = 16
	}
	if o.Width <= 0 || o.Height <= 0 {
		o.Width, o.Height = 96, 96
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("sample shards: %w", err)
	}
	var paths []string
	for i := range n {
		p := filepath.Join(dir, fmt.Sprintf("%05d.tar", i))
		f, err := os.Create(p)
		if err != nil {
			return nil, fmt.Errorf("sample shards: %w", err)
		}
		err = WriteSampleShard(f, i, o)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, fmt.Errorf("sample shard %s: %w", p, err)
		}
		paths = append(paths, p)
	}
	return paths, nil
}

// WriteSampleShard writes shard number index of the sample set to w.
func WriteSampleShard(w io.Writer, index int, o SampleOptions) error {
	rng := rand.New(rand.NewPCG(o.Seed, uint64(index)))
	tw := tar.NewWriter(w)
	for j := range o.PerShard {
		key := fmt.Sprintf("%05d%04d", index, j)
		scene := randomScene(rng)
		caption, matches := scene.Caption(), true
		if rng.Float64() < o.MismatchRate {
			other := scene
			for other == scene {
				other = randomScene(rng)
			}
			caption, matches = other.Caption(), false
		}
		img := Render(scene, o.Width, o.Height, backgrounds[rng.IntN(len(backgrounds))])
		ext := "png"
		var buf bytes.Buffer
		var err error
		if j%2 == 0 {
			ext = "jpg"
			err = jpeg.Encode(&buf, img, &jpeg.Options{Quality: 90})
		} else {
			err = png.Encode(&buf, img)
		}
		if err != nil {
			return err
		}
		data := buf.Bytes()
		corrupt := rng.Float64() < o.CorruptRate
		if corrupt {
			data = data[:len(data)/3]
		}
		meta, _ := json.Marshal(map[string]any{"key": key, "url": fmt.Sprintf("https://example.invalid/%s.%s", key, ext),
			"width": o.Width, "height": o.Height, "scene": scene, "caption_matches": matches, "corrupt": corrupt})
		if err := writeMembers(tw, key, ext, data, caption, meta); err != nil {
			return err
		}
	}
	return tw.Close()
}

func randomScene(rng *rand.Rand) Scene {
	return Scene{Shape: shapeNames[rng.IntN(len(shapeNames))], Colour: colourNames[rng.IntN(len(colourNames))],
		Position: positions[rng.IntN(len(positions))], Large: rng.IntN(2) == 0}
}

// Render draws a scene: its shape, in its colour, at its position, on bg.
func Render(s Scene, w, h int, bg color.RGBA) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	side := min(w, h)
	r := side / 8
	if s.Large {
		r = side / 4
	}
	cx, cy := w/2, h/2
	switch s.Position {
	case "left":
		cx = w / 4
	case "right":
		cx = 3 * w / 4
	case "top":
		cy = h / 4
	case "bottom":
		cy = 3 * h / 4
	}
	fg := colours[s.Colour]
	for y := range h {
		for x := range w {
			dx, dy := x-cx, y-cy
			in := false
			switch s.Shape {
			case "circle":
				in = dx*dx+dy*dy <= r*r
			case "square":
				in = abs(dx) <= r && abs(dy) <= r
			case "triangle": // apex up: the row's half-width grows from 0 at the top to r
				in = dy >= -r && dy <= r && abs(dx) <= (dy+r)/2
			}
			if in {
				img.SetRGBA(x, y, fg)
			} else {
				img.SetRGBA(x, y, bg)
			}
		}
	}
	return img
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}
