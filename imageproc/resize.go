package imageproc

import "math"

// ResizeBicubic resizes src to w×h exactly as PIL's Image.resize((w, h), BICUBIC)
// does for an 8-bit RGB image, which is what BLIP's torchvision Resize runs:
// a separable convolution with the a = -0.5 cubic kernel, its support widened by
// the scale factor when shrinking (antialiasing), weights normalised per output
// sample and rounded to 22-bit fixed point, horizontal pass first with the
// intermediate rounded and clipped to uint8, then the vertical pass. Only the
// source rows the vertical pass reads go through the horizontal pass, and a pass
// whose size does not change is skipped, as in Pillow's ImagingResampleInner.
//
// src is not modified. A non-positive w or h gives an empty 0×0 image and an empty
// src a black one, where PIL would raise; neither reaches here from Preprocess.
func ResizeBicubic(src *RGBImage, w, h int) *RGBImage {
	if w <= 0 || h <= 0 {
		return NewRGBImage(0, 0)
	}
	if src.Width <= 0 || src.Height <= 0 {
		return NewRGBImage(w, h)
	}
	needH := w != src.Width
	needV := h != src.Height
	if !needH && !needV {
		out := NewRGBImage(w, h)
		copy(out.Pix, src.Pix)
		return out
	}
	vert := resampleCoeffs(src.Height, h)
	img := src
	if needH {
		// Rows outside [first, last) are never read by the vertical pass.
		first := vert.bounds[0]
		last := vert.bounds[2*(h-1)] + vert.bounds[2*(h-1)+1]
		img = resampleRows(src, first, last, resampleCoeffs(src.Width, w))
		for i := 0; i < h; i++ {
			vert.bounds[2*i] -= first
		}
	}
	if needV {
		img = resampleColumns(img, vert)
	}
	return img
}

// precisionBits is Pillow's PRECISION_BITS: 32 bits minus 8 for the sample and 2
// of headroom for the kernel's negative lobes.
const precisionBits = 32 - 8 - 2

// resampleKernel holds, for every output sample, the first input index it reads,
// how many it reads, and that many fixed-point weights (ksize slots each).
type resampleKernel struct {
	ksize  int
	bounds []int   // (first, count) per output sample
	coeffs []int32 // ksize per output sample
}

// cubic is Pillow's bicubic_filter: the Keys kernel with a = -0.5.
//
// Every product is wrapped in an explicit float64 conversion: Go may otherwise fuse
// a multiply and an add into one FMA instruction (GOAMD64=v3, arm64), which rounds
// once instead of twice and changes the last bit of some weights.
func cubic(x float64) float64 {
	const a = -0.5
	if x < 0 {
		x = -x
	}
	if x < 1 {
		p := float64((a+2)*x) - (a + 3)
		return float64(float64(p*x)*x) + 1
	}
	if x < 2 {
		p := float64((x-5)*x) + 8
		q := float64(p*x) - 4
		return float64(q * a)
	}
	return 0
}

// resampleCoeffs is Pillow's precompute_coeffs followed by normalize_coeffs_8bpc for
// mapping inSize samples onto outSize over the whole input (box 0..inSize).
func resampleCoeffs(inSize, outSize int) resampleKernel {
	const support = 2.0 // bicubic
	scale := float64(inSize) / float64(outSize)
	filterScale := max(scale, 1)
	sup := support * filterScale
	ksize := int(math.Ceil(sup))*2 + 1
	k := resampleKernel{ksize: ksize, bounds: make([]int, 2*outSize), coeffs: make([]int32, outSize*ksize)}
	weights := make([]float64, ksize)
	for xx := 0; xx < outSize; xx++ {
		center := float64((float64(xx) + 0.5) * scale)
		ss := 1 / filterScale
		xmin := max(int(center-sup+0.5), 0)
		xmax := min(int(center+sup+0.5), inSize) - xmin
		var ww float64
		for x := 0; x < xmax; x++ {
			w := cubic(float64((float64(x+xmin) - center + 0.5) * ss))
			weights[x] = w
			ww += w
		}
		row := k.coeffs[xx*ksize : (xx+1)*ksize]
		for x := 0; x < xmax; x++ {
			w := weights[x]
			if ww != 0 {
				w /= ww
			}
			// Round half away from zero, truncating like C's (int) cast.
			if w < 0 {
				row[x] = int32(-0.5 + w*(1<<precisionBits))
			} else {
				row[x] = int32(0.5 + w*(1<<precisionBits))
			}
		}
		k.bounds[2*xx], k.bounds[2*xx+1] = xmin, xmax
	}
	return k
}

// clip8 drops the fraction bits and clamps to 0..255 (Pillow's clip8 lookup).
func clip8(v int32) uint8 {
	v >>= precisionBits
	if v < 0 {
		return 0
	}
	if v > 255 {
		return 255
	}
	return uint8(v)
}

// resampleRows is the horizontal pass over source rows [first, last).
func resampleRows(src *RGBImage, first, last int, k resampleKernel) *RGBImage {
	w := len(k.bounds) / 2
	out := NewRGBImage(w, last-first)
	for y := 0; y < out.Height; y++ {
		in := src.Pix[3*(first+y)*src.Width : 3*(first+y+1)*src.Width]
		dst := out.Pix[3*y*w : 3*(y+1)*w]
		for xx := 0; xx < w; xx++ {
			xmin, n := k.bounds[2*xx], k.bounds[2*xx+1]
			coeffs := k.coeffs[xx*k.ksize : xx*k.ksize+n]
			pix := in[3*xmin : 3*(xmin+n)]
			r, g, b := int32(1<<(precisionBits-1)), int32(1<<(precisionBits-1)), int32(1<<(precisionBits-1))
			for i, c := range coeffs {
				p := pix[3*i : 3*i+3 : 3*i+3]
				r += int32(p[0]) * c
				g += int32(p[1]) * c
				b += int32(p[2]) * c
			}
			dst[3*xx], dst[3*xx+1], dst[3*xx+2] = clip8(r), clip8(g), clip8(b)
		}
	}
	return out
}

// resampleColumns is the vertical pass; bounds index rows of src.
func resampleColumns(src *RGBImage, k resampleKernel) *RGBImage {
	h := len(k.bounds) / 2
	out := NewRGBImage(src.Width, h)
	stride := 3 * src.Width
	acc := make([]int32, stride)
	for yy := 0; yy < h; yy++ {
		ymin, n := k.bounds[2*yy], k.bounds[2*yy+1]
		coeffs := k.coeffs[yy*k.ksize : yy*k.ksize+n]
		for i := range acc {
			acc[i] = 1 << (precisionBits - 1)
		}
		// Row by row, so the inner loop runs along contiguous memory.
		for i, c := range coeffs {
			row := src.Pix[(ymin+i)*stride : (ymin+i+1)*stride]
			for j, p := range row {
				acc[j] += int32(p) * c
			}
		}
		dst := out.Pix[yy*stride : (yy+1)*stride]
		for j, v := range acc {
			dst[j] = clip8(v)
		}
	}
	return out
}
