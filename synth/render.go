package synth

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math"
)

// MinImageSize is the smallest render size at which every shape stays readable: a
// 16-pixel cell, where a small object is 7 pixels across and a large one 13. Below it
// a small circle, diamond and cross become the same blob.
const MinImageSize = 48

// cellBounds is the pixel span [lo, hi) of grid cell i along a side of n pixels.
func cellBounds(i, n int) (lo, hi int) { return i * n / GridSize, (i + 1) * n / GridSize }

// halfExtent is how far an object of the given size reaches from its centre, in pixels,
// inside a cell of the given side.
func halfExtent(size string, cell int) int {
	if size == "large" {
		return cell * 2 / 5
	}
	return cell * 9 / 40
}

// Centre is where object i of p is drawn in a size×size image.
func (p Picture) Centre(i, size int) (x, y int) {
	o := p.Objects[i]
	x0, x1 := cellBounds(o.Col, size)
	y0, y1 := cellBounds(o.Row, size)
	cell := min(x1-x0, y1-y0)
	h := halfExtent(o.Size, cell)
	// The jitter leaves a pixel of background around the object and moves it by at most
	// a sixteenth of the cell (1 px at 48 px), so the cell's centre pixel always shows the
	// object, even a small diamond or cross.
	room := max(0, min(cell/2-h-1, cell/16))
	return (x0+x1)/2 + int(math.Round(o.JitterX*float64(room))), (y0+y1)/2 + int(math.Round(o.JitterY*float64(room)))
}

// Render draws p as a size×size image: hard-edged shapes (no anti-aliasing), so every
// pixel of an object has exactly its colour before any JPEG coding.
func (p Picture) Render(size int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, size, size))
	base := tones[p.Background.Tone]
	dark := [3]uint8{base[0] - 40, base[1] - 40, base[2] - 40}
	period := max(4, size/8)
	for y := range size {
		for x := range size {
			c := base
			if p.Background.inPattern(x, y, period) {
				c = dark
			}
			img.SetRGBA(x, y, rgba(c))
		}
	}
	for i, o := range p.Objects {
		x0, x1 := cellBounds(o.Col, size)
		y0, y1 := cellBounds(o.Row, size)
		h := halfExtent(o.Size, min(x1-x0, y1-y0))
		cx, cy := p.Centre(i, size)
		fg := rgba(objectColours[o.Colour])
		for y := cy - h; y <= cy+h; y++ {
			for x := cx - h; x <= cx+h; x++ {
				if insideShape(o.Shape, x-cx, y-cy, h) {
					img.SetRGBA(x, y, fg)
				}
			}
		}
	}
	return img
}

// inPattern reports whether pixel (x, y) takes the texture's darker tone.
func (b Background) inPattern(x, y, period int) bool {
	half := period / 2
	switch b.Texture {
	case "striped":
		switch b.Orientation {
		case "vertical":
			return x%period < half
		case "diagonal":
			return (x+y)%period < half
		}
		return y%period < half
	case "checkered":
		return (x/half+y/half)%2 == 0
	case "dotted":
		return x%period < 2 && y%period < 2
	}
	return false
}

// insideShape reports whether offset (dx, dy) from an object's centre is part of a shape
// reaching h pixels from it.
func insideShape(shape string, dx, dy, h int) bool {
	switch shape {
	case "circle":
		return dx*dx+dy*dy <= h*h+h
	case "square": // a little inside h, so a square does not outweigh a circle of its size
		s := h - h/6
		return abs(dx) <= s && abs(dy) <= s
	case "triangle": // apex up: the row's half-width grows from 0 at the top to h
		return dy >= -h && dy <= h && abs(dx) <= (dy+h)/2
	case "diamond":
		return abs(dx)+abs(dy) <= h
	case "cross":
		t := max(1, h/3)
		return (abs(dx) <= t && abs(dy) <= h) || (abs(dy) <= t && abs(dx) <= h)
	}
	return false
}

func rgba(c [3]uint8) color.RGBA { return color.RGBA{c[0], c[1], c[2], 255} }

// encodeImage codes img as "jpg" (at quality) or "png".
func encodeImage(img image.Image, format string, quality int) ([]byte, error) {
	var buf bytes.Buffer
	var err error
	switch format {
	case "jpg":
		err = jpeg.Encode(&buf, img, &jpeg.Options{Quality: quality})
	case "png":
		err = png.Encode(&buf, img)
	default:
		return nil, fmt.Errorf("image format %q: want jpg or png", format)
	}
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", format, err)
	}
	return buf.Bytes(), nil
}
