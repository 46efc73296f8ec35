package imageproc

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	_ "image/gif"  // registers "gif" with image.Decode
	_ "image/jpeg" // registers "jpeg"
	_ "image/png"  // registers "png"

	_ "golang.org/x/image/bmp"  // registers "bmp"
	_ "golang.org/x/image/webp" // registers "webp"
)

// This file turns encoded image bytes into the 8-bit RGB raster BLIP's transforms
// start from: what PIL's Image.open(...).convert("RGB") gives. Orientation tags
// (EXIF) are ignored, as PIL does unless asked.

// RGBImage is an 8-bit RGB raster: rows top to bottom, 3 bytes (R, G, B) per pixel.
type RGBImage struct {
	Width, Height int
	Pix           []uint8 // len 3*Width*Height
}

// NewRGBImage allocates a black w×h image.
func NewRGBImage(w, h int) *RGBImage {
	return &RGBImage{Width: w, Height: h, Pix: make([]uint8, 3*w*h)}
}

// DefaultMaxPixels is PIL's Image.MAX_IMAGE_PIXELS, the size past which PIL warns of
// a decompression bomb (it refuses at twice that).
const DefaultMaxPixels = 89_478_485

// ImageLimits bounds what Decode accepts.
type ImageLimits struct {
	// MaxPixels refuses an image whose header declares more than this many pixels
	// (width × height), before any pixel data is decoded. Zero or less means
	// DefaultMaxPixels.
	MaxPixels int64
}

func (l ImageLimits) maxPixels() int64 {
	if l.MaxPixels <= 0 {
		return DefaultMaxPixels
	}
	return l.MaxPixels
}

// The reasons an image is refused; Decode's errors wrap one of them, so a
// caller can count skipped samples by reason with errors.Is.
var (
	ErrImageFormat   = errors.New("unrecognised image format")
	ErrImageTooLarge = errors.New("image exceeds the pixel limit")
	ErrImageCorrupt  = errors.New("corrupt image")
)

// Decode decodes a JPEG, PNG, GIF (first frame), BMP or WebP image and converts
// it to RGB the way PIL's convert("RGB") does: palette entries looked up (the
// transparent one keeps its colour), grey replicated, alpha dropped (not composited
// on any background), 16-bit RGB(A) samples cut to their high byte, 16-bit grey
// clipped to 0..255 (PIL reads it as 32-bit integers), CMYK mapped as PIL maps it,
// and JPEG chroma upsampled and converted like libjpeg-turbo. It returns the format
// name ("jpeg", "png", "gif", "bmp", "webp"). The header is checked against
// limits before any pixel is decoded. A decoder panic (Go's decoders should not,
// but web images are hostile) is returned as ErrImageCorrupt.
func Decode(data []byte, limits ImageLimits) (img *RGBImage, format string, err error) {
	defer func() {
		if p := recover(); p != nil {
			img, err = nil, fmt.Errorf("decode %s: %w: decoder panicked: %v", format, ErrImageCorrupt, p)
		}
	}()
	cfg, format, err := image.DecodeConfig(bytes.NewReader(data))
	if errors.Is(err, image.ErrFormat) {
		return nil, "", fmt.Errorf("decode image: %w (%d bytes starting % x)", ErrImageFormat, len(data), data[:min(len(data), 8)])
	}
	if err != nil {
		return nil, format, fmt.Errorf("decode %s header: %w: %w", format, ErrImageCorrupt, err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return nil, format, fmt.Errorf("decode %s: %w: empty %dx%d image", format, ErrImageCorrupt, cfg.Width, cfg.Height)
	}
	if px := int64(cfg.Width) * int64(cfg.Height); px > limits.maxPixels() {
		return nil, format, fmt.Errorf("decode %s: %dx%d is %d pixels: %w of %d",
			format, cfg.Width, cfg.Height, px, ErrImageTooLarge, limits.maxPixels())
	}
	// For GIF this is the first frame only; the decoder stops there.
	m, _, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, format, fmt.Errorf("decode %s: %w: %w", format, ErrImageCorrupt, err)
	}
	var rgb *RGBImage
	switch format {
	case "gif":
		rgb, err = gifToRGB(m, data, cfg.Width, cfg.Height)
	default:
		rgb = toRGB(m, format, format == "png" && pngIsGray16(data))
	}
	if err != nil {
		return nil, format, fmt.Errorf("decode %s: %w: %w", format, ErrImageCorrupt, err)
	}
	return rgb, format, nil
}

// pngIsGray16 reports whether a PNG's IHDR declares 16-bit greyscale (colour type 0).
// PIL opens those as 32-bit integer images, and converting that to RGB clips each
// sample to 0..255 instead of scaling it, so nearly every pixel turns white; Go
// hands them over as Gray16, or NRGBA64 when a tRNS chunk is present, and only the
// header tells the latter apart from 16-bit grey+alpha.
func pngIsGray16(data []byte) bool {
	// 8-byte signature, 4-byte length, "IHDR", width, height, bit depth, colour type.
	return len(data) > 25 && string(data[12:16]) == "IHDR" && data[24] == 16 && data[25] == 0
}

// toRGB converts a decoded image to RGB as PIL's convert("RGB") does for the mode
// PIL would have opened it in; clipGray16 selects PIL's 16-bit greyscale handling.
func toRGB(m image.Image, format string, clipGray16 bool) *RGBImage {
	b := m.Bounds()
	out := NewRGBImage(b.Dx(), b.Dy())
	px := out.Pix
	switch m := m.(type) {
	case *image.YCbCr:
		if format == "webp" {
			return webpYCbCrToRGB(m)
		}
		return jpegYCbCrToRGB(m)
	case *image.NYCbCrA:
		// Lossy WebP with alpha: PIL opens it RGBA and convert("RGB") drops alpha.
		return webpYCbCrToRGB(&m.YCbCr)
	case *image.Gray:
		for y := 0; y < out.Height; y++ {
			row := m.Pix[m.PixOffset(b.Min.X, b.Min.Y+y):]
			for x := 0; x < out.Width; x++ {
				v := row[x]
				px[0], px[1], px[2] = v, v, v
				px = px[3:]
			}
		}
	case *image.Gray16:
		// PIL: mode "I", then i2rgb clips to 0..255.
		for y := 0; y < out.Height; y++ {
			for x := 0; x < out.Width; x++ {
				v := clipTo255(m.Gray16At(b.Min.X+x, b.Min.Y+y).Y)
				px[0], px[1], px[2] = v, v, v
				px = px[3:]
			}
		}
	case *image.NRGBA:
		for y := 0; y < out.Height; y++ {
			row := m.Pix[m.PixOffset(b.Min.X, b.Min.Y+y):]
			for x := 0; x < out.Width; x++ {
				px[0], px[1], px[2] = row[4*x], row[4*x+1], row[4*x+2]
				px = px[3:]
			}
		}
	case *image.NRGBA64:
		for y := 0; y < out.Height; y++ {
			row := m.Pix[m.PixOffset(b.Min.X, b.Min.Y+y):]
			for x := 0; x < out.Width; x++ {
				if clipGray16 {
					v := clipTo255(uint16(row[8*x])<<8 | uint16(row[8*x+1]))
					px[0], px[1], px[2] = v, v, v
				} else {
					// Big-endian samples: the first byte is the high byte PIL keeps.
					px[0], px[1], px[2] = row[8*x], row[8*x+2], row[8*x+4]
				}
				px = px[3:]
			}
		}
	case *image.RGBA64:
		for y := 0; y < out.Height; y++ {
			row := m.Pix[m.PixOffset(b.Min.X, b.Min.Y+y):]
			for x := 0; x < out.Width; x++ {
				px[0], px[1], px[2] = row[8*x], row[8*x+2], row[8*x+4]
				px = px[3:]
			}
		}
	case *image.Paletted:
		lut := paletteRGB(m.Palette)
		for y := 0; y < out.Height; y++ {
			row := m.Pix[m.PixOffset(b.Min.X, b.Min.Y+y):]
			for x := 0; x < out.Width; x++ {
				c := lut[row[x]]
				px[0], px[1], px[2] = c[0], c[1], c[2]
				px = px[3:]
			}
		}
	case *image.RGBA:
		for y := 0; y < out.Height; y++ {
			row := m.Pix[m.PixOffset(b.Min.X, b.Min.Y+y):]
			for x := 0; x < out.Width; x++ {
				c := row[4*x : 4*x+4]
				if c[3] != 255 {
					// Only a translucent source gets here (Go's decoders hand back
					// opaque RGBA); undo the premultiplication.
					n := color.NRGBAModel.Convert(color.RGBA{c[0], c[1], c[2], c[3]}).(color.NRGBA)
					c = []uint8{n.R, n.G, n.B}
				}
				px[0], px[1], px[2] = c[0], c[1], c[2]
				px = px[3:]
			}
		}
	case *image.CMYK:
		for y := 0; y < out.Height; y++ {
			row := m.Pix[m.PixOffset(b.Min.X, b.Min.Y+y):]
			for x := 0; x < out.Width; x++ {
				c := row[4*x : 4*x+4]
				px[0], px[1], px[2] = cmykToRGB(c[0], c[3]), cmykToRGB(c[1], c[3]), cmykToRGB(c[2], c[3])
				px = px[3:]
			}
		}
	default:
		// Anything else: the straight, non-premultiplied colour, alpha dropped.
		for y := 0; y < out.Height; y++ {
			for x := 0; x < out.Width; x++ {
				c := color.NRGBAModel.Convert(m.At(b.Min.X+x, b.Min.Y+y)).(color.NRGBA)
				px[0], px[1], px[2] = c.R, c.G, c.B
				px = px[3:]
			}
		}
	}
	return out
}

func clipTo255(v uint16) uint8 {
	if v > 255 {
		return 255
	}
	return uint8(v)
}

// cmykToRGB is PIL's cmyk2rgb for one channel: (255-k) - round(c·(255-k)/255),
// with PIL's integer rounding for the division by 255.
func cmykToRGB(c, k uint8) uint8 {
	nk := 255 - int(k)
	t := int(c)*nk + 128
	return uint8(nk - ((t>>8)+t)>>8)
}

// paletteRGB is a 256-entry colour table; indexes past the palette map to black,
// as PIL's zero-padded palettes do.
func paletteRGB(p color.Palette) [256][3]uint8 {
	var lut [256][3]uint8
	for i, c := range p {
		if i == 256 {
			break
		}
		n := color.NRGBAModel.Convert(c).(color.NRGBA)
		lut[i] = [3]uint8{n.R, n.G, n.B}
	}
	return lut
}
