package imageproc

import "image"

// Lossy WebP is VP8: 4:2:0 YCbCr in BT.601 studio range (Y 16..235). Go's decoder
// hands over the planes, and image/color would convert them as full-range JFIF,
// visibly washing the picture out; PIL goes through libwebp, which upsamples chroma
// with its "fancy" filter and converts with 14-bit fixed point (src/dsp/yuv.h,
// src/dsp/upsampling.c). Both are redone here so the pixels match PIL's.

// webpYCbCrToRGB converts lossy WebP planes as libwebp does.
func webpYCbCrToRGB(m *image.YCbCr) *RGBImage {
	if m.SubsampleRatio != image.YCbCrSubsampleRatio420 {
		return jpegYCbCrToRGB(m) // VP8 is always 4:2:0; nothing else reaches here
	}
	w, h := m.Rect.Dx(), m.Rect.Dy()
	out := NewRGBImage(w, h)
	cb := chromaPlane(m, m.Cb, 2, 2)
	cr := chromaPlane(m, m.Cr, 2, 2)
	y0 := m.YOffset(m.Rect.Min.X, m.Rect.Min.Y)
	u, v := make([]uint8, w), make([]uint8, w)
	for y := 0; y < h; y++ {
		// libwebp walks output rows in pairs (2k-1, 2k) between chroma rows k-1 and
		// k; the first row, and the last of an even-height image, use one chroma row
		// twice. The odd row of a pair leans on row k-1, the even row on row k.
		top, cur, nearTop := 0, 0, true
		if y > 0 {
			k := (y + 1) / 2
			top, cur, nearTop = k-1, min(k, cb.h-1), y%2 == 1
		}
		webpUpsampleRow(u, cb.row(top), cb.row(cur), nearTop)
		webpUpsampleRow(v, cr.row(top), cr.row(cur), nearTop)
		lum := m.Y[y0+y*m.YStride : y0+y*m.YStride+w]
		px := out.Pix[3*y*w : 3*(y+1)*w]
		for x, l := range lum {
			yy, uu, vv := int32(l), int32(u[x]), int32(v[x])
			px[3*x] = webpClip8(webpMulHi(yy, 19077) + webpMulHi(vv, 26149) - 14234)
			px[3*x+1] = webpClip8(webpMulHi(yy, 19077) - webpMulHi(uu, 6419) - webpMulHi(vv, 13320) + 8708)
			px[3*x+2] = webpClip8(webpMulHi(yy, 19077) + webpMulHi(uu, 33050) - 17685)
		}
	}
	return out
}

func webpMulHi(v, coeff int32) int32 { return (v * coeff) >> 8 }

// webpClip8 drops libwebp's 6 fraction bits and clamps to 0..255.
func webpClip8(v int32) uint8 {
	if v&^(256<<6-1) == 0 {
		return uint8(v >> 6)
	}
	if v < 0 {
		return 0
	}
	return 255
}

// webpUpsampleRow fills out (one chroma value per pixel) from the two chroma rows
// around it: the 2×2 neighbourhood weighted 9:3:3:1 towards the nearest sample,
// computed through libwebp's two diagonal averages so the rounding is the same.
// nearTop says the output row lies nearer the top chroma row.
func webpUpsampleRow(out, top, cur []uint8, nearTop bool) {
	w := len(out)
	vert := func(t, c int32) uint8 { // vertical-only blend, used at both ends
		if nearTop {
			return uint8((3*t + c + 2) >> 2)
		}
		return uint8((3*c + t + 2) >> 2)
	}
	tl, l := int32(top[0]), int32(cur[0])
	out[0] = vert(tl, l)
	last := (w - 1) >> 1
	for x := 1; x <= last; x++ {
		t, c := int32(top[x]), int32(cur[x])
		avg := tl + t + l + c + 8
		diag12 := (avg + 2*(t+l)) >> 3
		diag03 := (avg + 2*(tl+c)) >> 3
		if nearTop {
			out[2*x-1] = uint8((diag12 + tl) >> 1)
			out[2*x] = uint8((diag03 + t) >> 1)
		} else {
			out[2*x-1] = uint8((diag03 + l) >> 1)
			out[2*x] = uint8((diag12 + c) >> 1)
		}
		tl, l = t, c
	}
	if w%2 == 0 {
		out[w-1] = vert(tl, l)
	}
}
