package imageproc

import "image"

// PIL decodes JPEG with libjpeg-turbo's defaults: chroma upsampled with the "fancy"
// triangle filter (not replicated, as Go's image/jpeg does) and YCbCr converted with
// libjpeg's 16-bit fixed-point tables. Go's decoder gives us the subsampled planes,
// so both steps are redone here the libjpeg way; what remains is the IDCT, where Go
// and libjpeg's islow differ by a unit now and then.

// libjpeg's YCbCr -> RGB tables (jdcolor.c): 16 fraction bits, rounded.
var jpegCrR, jpegCbB [256]int32
var jpegCrG, jpegCbG [256]int32

func init() {
	const half = 1 << 15
	for i := range 256 {
		x := int32(i - 128)
		jpegCrR[i] = (91881*x + half) >> 16  // 1.40200
		jpegCbB[i] = (116130*x + half) >> 16 // 1.77200
		jpegCrG[i] = -46802 * x              // 0.71414
		jpegCbG[i] = -22554*x + half         // 0.34414
	}
}

// jpegYCbCrToRGB converts a decoded YCbCr image as libjpeg-turbo would.
func jpegYCbCrToRGB(m *image.YCbCr) *RGBImage {
	w, h := m.Rect.Dx(), m.Rect.Dy()
	out := NewRGBImage(w, h)
	hs, vs := chromaFactors(m.SubsampleRatio)
	cb := upsampleChroma(chromaPlane(m, m.Cb, hs, vs), hs, vs, w, h)
	cr := upsampleChroma(chromaPlane(m, m.Cr, hs, vs), hs, vs, w, h)
	y0 := m.YOffset(m.Rect.Min.X, m.Rect.Min.Y)
	for y := 0; y < h; y++ {
		lum := m.Y[y0+y*m.YStride : y0+y*m.YStride+w]
		px := out.Pix[3*y*w : 3*(y+1)*w]
		cbRow, crRow := cb[y*w:(y+1)*w], cr[y*w:(y+1)*w]
		for x, yy := range lum {
			l := int32(yy)
			b, r := cbRow[x], crRow[x]
			px[3*x] = clampByte(l + jpegCrR[r])
			px[3*x+1] = clampByte(l + (jpegCbG[b]+jpegCrG[r])>>16)
			px[3*x+2] = clampByte(l + jpegCbB[b])
		}
	}
	return out
}

func clampByte(v int32) uint8 {
	if v < 0 {
		return 0
	}
	if v > 255 {
		return 255
	}
	return uint8(v)
}

// chromaFactors is the horizontal and vertical subsampling of the chroma planes.
func chromaFactors(r image.YCbCrSubsampleRatio) (h, v int) {
	switch r {
	case image.YCbCrSubsampleRatio422:
		return 2, 1
	case image.YCbCrSubsampleRatio420:
		return 2, 2
	case image.YCbCrSubsampleRatio440:
		return 1, 2
	case image.YCbCrSubsampleRatio411:
		return 4, 1
	case image.YCbCrSubsampleRatio410:
		return 4, 2
	}
	return 1, 1
}

// subsampled is one chroma plane at its own resolution, padding columns and rows
// (which Go decodes from the MCU padding) left out, as libjpeg's downsampled_width
// and downsampled_height leave them out.
type subsampled struct {
	w, h int
	pix  []uint8
}

func chromaPlane(m *image.YCbCr, plane []uint8, hs, vs int) subsampled {
	w := (m.Rect.Dx() + hs - 1) / hs
	h := (m.Rect.Dy() + vs - 1) / vs
	base := m.COffset(m.Rect.Min.X, m.Rect.Min.Y)
	p := subsampled{w: w, h: h, pix: make([]uint8, w*h)}
	for y := 0; y < h; y++ {
		copy(p.pix[y*w:(y+1)*w], plane[base+y*m.CStride:])
	}
	return p
}

// row returns chroma row y, clamped to the plane: libjpeg gives the first row itself
// as the row above it and the last row as the row below it.
func (p subsampled) row(y int) []uint8 {
	y = max(0, min(y, p.h-1))
	return p.pix[y*p.w : (y+1)*p.w]
}

// upsampleChroma expands a chroma plane to w×h with libjpeg-turbo's method for its
// sampling factors (jdsample.c): the fancy triangle filters for 2×1, 1×2 and 2×2
// (the 2-wide ones only when the plane is more than 2 samples wide), replication
// otherwise.
func upsampleChroma(p subsampled, hs, vs, w, h int) []uint8 {
	out := make([]uint8, w*h)
	line := make([]uint8, p.w*hs) // one upsampled row; may be wider than w
	colsum := make([]int32, p.w)
	for y := 0; y < h; y++ {
		k, below := y/vs, y%vs == 1
		switch {
		case hs == 1 && vs == 1:
			copy(line, p.row(y))
		case hs == 2 && vs == 1 && p.w > 2:
			fancyH2V1(line, p.row(y))
		case hs == 1 && vs == 2:
			near, far, bias := p.row(k), p.row(k-1), int32(1)
			if below {
				far, bias = p.row(k+1), 2
			}
			for i := range near {
				line[i] = uint8((3*int32(near[i]) + int32(far[i]) + bias) >> 2)
			}
		case hs == 2 && vs == 2 && p.w > 2:
			near, far := p.row(k), p.row(k-1)
			if below {
				far = p.row(k + 1)
			}
			for i := range near {
				colsum[i] = 3*int32(near[i]) + int32(far[i])
			}
			fancyH2V2(line, colsum)
		default:
			src := p.row(k)
			for i := range line {
				line[i] = src[i/hs]
			}
		}
		copy(out[y*w:(y+1)*w], line)
	}
	return out
}

// fancyH2V1 doubles a row: each output sample is 3/4 of its nearer input and 1/4 of
// the farther one, with libjpeg's alternating rounding bias.
func fancyH2V1(out, in []uint8) {
	n := len(in)
	out[0] = in[0]
	out[1] = uint8((3*int32(in[0]) + int32(in[1]) + 2) >> 2)
	for i := 1; i < n-1; i++ {
		v := 3 * int32(in[i])
		out[2*i] = uint8((v + int32(in[i-1]) + 1) >> 2)
		out[2*i+1] = uint8((v + int32(in[i+1]) + 2) >> 2)
	}
	out[2*n-2] = uint8((3*int32(in[n-1]) + int32(in[n-2]) + 1) >> 2)
	out[2*n-1] = in[n-1]
}

// fancyH2V2 doubles a row of vertical 3:1 sums horizontally with the same 3:1
// weights, giving libjpeg's 9/16, 3/16, 3/16, 1/16 filter.
func fancyH2V2(out []uint8, colsum []int32) {
	n := len(colsum)
	out[0] = uint8((colsum[0]*4 + 8) >> 4)
	out[1] = uint8((colsum[0]*3 + colsum[1] + 7) >> 4)
	for i := 1; i < n-1; i++ {
		out[2*i] = uint8((colsum[i]*3 + colsum[i-1] + 8) >> 4)
		out[2*i+1] = uint8((colsum[i]*3 + colsum[i+1] + 7) >> 4)
	}
	out[2*n-2] = uint8((colsum[n-1]*3 + colsum[n-2] + 8) >> 4)
	out[2*n-1] = uint8((colsum[n-1]*4 + 7) >> 4)
}
