package imageproc

import (
	"errors"
	"fmt"
	"image"
)

// gifToRGB renders a GIF's first frame as PIL's convert("RGB") sees it: a canvas the
// size of the logical screen, filled with the palette colour of the transparent
// index (index 0 when there is none), with the frame pasted at its offset. The
// transparent index keeps its palette colour: convert("RGB") ignores transparency,
// while Go's decoder blanks that palette entry, so the colour is read back from the
// file.
func gifToRGB(m image.Image, data []byte, screenW, screenH int) (*RGBImage, error) {
	frame, ok := m.(*image.Paletted)
	if !ok {
		return nil, fmt.Errorf("first frame is %T, not paletted", m)
	}
	lut := paletteRGB(frame.Palette)
	fill := 0
	info, err := scanGIFFirstFrame(data)
	if err != nil {
		return nil, err
	}
	if info.transparent >= 0 {
		fill = info.transparent
		if 3*info.transparent+2 < len(info.palette) {
			copy(lut[info.transparent][:], info.palette[3*info.transparent:])
		}
	}
	out := NewRGBImage(screenW, screenH)
	bg := lut[fill]
	for i := 0; i < len(out.Pix); i += 3 {
		out.Pix[i], out.Pix[i+1], out.Pix[i+2] = bg[0], bg[1], bg[2]
	}
	r := frame.Rect.Intersect(image.Rect(0, 0, screenW, screenH))
	for y := r.Min.Y; y < r.Max.Y; y++ {
		src := frame.Pix[frame.PixOffset(r.Min.X, y):]
		dst := out.Pix[3*(y*screenW+r.Min.X):]
		for x := 0; x < r.Dx(); x++ {
			c := lut[src[x]]
			dst[3*x], dst[3*x+1], dst[3*x+2] = c[0], c[1], c[2]
		}
	}
	return out, nil
}

// gifFrameInfo is what the first frame's headers say about its colours.
type gifFrameInfo struct {
	transparent int    // the graphic control extension's transparent index, or -1
	palette     []byte // the frame's colour table (local, else global), RGB triples
}

var errGIFTruncated = errors.New("gif headers truncated")

// scanGIFFirstFrame walks the GIF block structure up to the first image descriptor:
// header, logical screen descriptor, global colour table, extensions (the last
// graphic control extension before the image applies to it), then the image's own
// colour table if it has one.
func scanGIFFirstFrame(data []byte) (gifFrameInfo, error) {
	info := gifFrameInfo{transparent: -1}
	if len(data) < 13 {
		return info, errGIFTruncated
	}
	pos := 13
	colorTable := func(flags byte) ([]byte, error) {
		if flags&0x80 == 0 {
			return nil, nil
		}
		n := 3 << (flags&7 + 1)
		if pos+n > len(data) {
			return nil, errGIFTruncated
		}
		t := data[pos : pos+n]
		pos += n
		return t, nil
	}
	global, err := colorTable(data[10])
	if err != nil {
		return info, err
	}
	info.palette = global
	for pos < len(data) {
		switch data[pos] {
		case 0x21: // extension: label, then data sub-blocks
			if pos+2 > len(data) {
				return info, errGIFTruncated
			}
			label := data[pos+1]
			pos += 2
			if label == 0xF9 && pos+5 <= len(data) && data[pos] >= 4 {
				// Graphic control: size, flags, delay (2), transparent index.
				info.transparent = -1
				if data[pos+1]&1 != 0 {
					info.transparent = int(data[pos+4])
				}
			}
			for {
				if pos >= len(data) {
					return info, errGIFTruncated
				}
				n := int(data[pos])
				pos += 1 + n
				if n == 0 {
					break
				}
			}
		case 0x2C: // image descriptor: left, top, width, height (2 bytes each), flags
			if pos+10 > len(data) {
				return info, errGIFTruncated
			}
			pos += 10
			local, err := colorTable(data[pos-1])
			if err != nil {
				return info, err
			}
			if local != nil {
				info.palette = local
			}
			return info, nil
		default:
			return info, fmt.Errorf("gif: unexpected block 0x%02x before the first image", data[pos])
		}
	}
	return info, errGIFTruncated
}
