package imageproc

import "math"

// Affine is a 2×3 matrix [a b c; d e f] that maps a source point to its destination,
// dst = (a·x + b·y + c, d·x + e·y + f), as cv2.warpAffine takes it without
// WARP_INVERSE_MAP. Pixel centres sit at integer coordinates.
type Affine [6]float64

// WarpAffine resamples img through m, the way BLIP's RandAugment calls
// cv2.warpAffine(img, m, (W, H), flags=INTER_LINEAR, borderMode=BORDER_CONSTANT,
// borderValue=fill) with OpenCV 4's fixed-point bilinear path, so pixels match OpenCV
// exactly: m is inverted in float64 as OpenCV inverts it; each destination pixel's
// source position is computed in 1/1024 steps (rounded half to even), then cut to a
// 1/32 grid; the four taps get integer weights (32-fx)(32-fy)·32 … summing to 2^15;
// a tap outside the image reads fill. The output has img's size.
func WarpAffine(img *RGBImage, m Affine, fill [3]uint8) *RGBImage {
	const (
		abBits     = 10 // OpenCV's AB_BITS: source positions in 1/1024 pixel
		interBits  = 5  // INTER_BITS: interpolation grid of 1/32 pixel
		tabSize    = 1 << interBits
		roundDelta = (1 << abBits) / tabSize / 2
		coefBits   = 15 // INTER_REMAP_COEF_BITS
	)
	w, h := img.Width, img.Height
	out := NewRGBImage(w, h)
	inv := invertAffine(m)
	adelta := make([]int, w)
	bdelta := make([]int, w)
	for x := range w {
		adelta[x] = roundInt(float64(inv[0]*float64(x)) * (1 << abBits))
		bdelta[x] = roundInt(float64(inv[3]*float64(x)) * (1 << abBits))
	}
	tap := func(sx, sy int) []uint8 {
		if sx < 0 || sy < 0 || sx >= w || sy >= h {
			return fill[:]
		}
		i := 3 * (sy*w + sx)
		return img.Pix[i : i+3]
	}
	for y := range h {
		x0 := roundInt(float64(float64(inv[1]*float64(y))+inv[2])*(1<<abBits)) + roundDelta
		y0 := roundInt(float64(float64(inv[4]*float64(y))+inv[5])*(1<<abBits)) + roundDelta
		dst := out.Pix[3*y*w : 3*(y+1)*w]
		for x := range w {
			// Arithmetic shifts floor negative positions, as OpenCV's do.
			X := (x0 + adelta[x]) >> (abBits - interBits)
			Y := (y0 + bdelta[x]) >> (abBits - interBits)
			sx, sy := clampShort(X>>interBits), clampShort(Y>>interBits)
			fx, fy := int32(X&(tabSize-1)), int32(Y&(tabSize-1))
			w00 := (tabSize - fx) * (tabSize - fy) * tabSize
			w01 := fx * (tabSize - fy) * tabSize
			w10 := (tabSize - fx) * fy * tabSize
			w11 := fx * fy * tabSize
			p00, p01, p10, p11 := tap(sx, sy), tap(sx+1, sy), tap(sx, sy+1), tap(sx+1, sy+1)
			for c := range 3 {
				v := int32(p00[c])*w00 + int32(p01[c])*w01 + int32(p10[c])*w10 + int32(p11[c])*w11
				dst[3*x+c] = uint8((v + 1<<(coefBits-1)) >> coefBits)
			}
		}
	}
	return out
}

// invertAffine is the inverse OpenCV's warpAffine computes (and in that order, so the
// last bits agree): a zero determinant gives the zero matrix, as there.
func invertAffine(m Affine) Affine {
	d := float64(m[0]*m[4]) - float64(m[1]*m[3])
	if d != 0 {
		d = 1 / d
	}
	a11, a22 := m[4]*d, m[0]*d
	a12, a21 := m[1]*-d, m[3]*-d
	b1 := float64(-a11*m[2]) - float64(a12*m[5])
	b2 := float64(-a21*m[2]) - float64(a22*m[5])
	return Affine{a11, a12, b1, a21, a22, b2}
}

// roundInt is OpenCV's saturate_cast<int>(double): round half to even.
func roundInt(v float64) int {
	return int(math.RoundToEven(v))
}

// clampShort is saturate_cast<short>, which bounds the integer source position.
func clampShort(v int) int {
	return min(max(v, math.MinInt16), math.MaxInt16)
}

// The geometric RandAugment ops build their matrices as BLIP's randaugment.py does:
// shear and translation in np.float32 (so a shear of 0.15 is float32(0.15)), rotation
// with cv2.getRotationMatrix2D about (W/2, H/2), all warped with WarpAffine.

// ShearX shifts row y by factor·y pixels to the right: dst(x, y) = src(x − factor·y, y).
func ShearX(img *RGBImage, factor float64, fill [3]uint8) *RGBImage {
	return WarpAffine(img, Affine{1, f32(factor), 0, 0, 1, 0}, fill)
}

// ShearY shifts column x by factor·x pixels down: dst(x, y) = src(x, y − factor·x).
func ShearY(img *RGBImage, factor float64, fill [3]uint8) *RGBImage {
	return WarpAffine(img, Affine{1, 0, 0, f32(factor), 1, 0}, fill)
}

// TranslateX moves the content offset pixels to the left: dst(x, y) = src(x + offset, y).
func TranslateX(img *RGBImage, offset float64, fill [3]uint8) *RGBImage {
	return WarpAffine(img, Affine{1, 0, f32(-offset), 0, 1, 0}, fill)
}

// TranslateY moves the content offset pixels up: dst(x, y) = src(x, y + offset).
func TranslateY(img *RGBImage, offset float64, fill [3]uint8) *RGBImage {
	return WarpAffine(img, Affine{1, 0, 0, 0, 1, f32(-offset)}, fill)
}

// Rotate turns the content counter-clockwise (as displayed, y down) by degrees about
// (W/2, H/2).
func Rotate(img *RGBImage, degrees float64, fill [3]uint8) *RGBImage {
	return WarpAffine(img, RotationMatrix(float64(img.Width)/2, float64(img.Height)/2, degrees), fill)
}

// RotationMatrix is cv2.getRotationMatrix2D(center, degrees, scale 1). The centre is
// rounded to float32 (OpenCV's Point2f) and the angle converted with a runtime
// division by 180, as OpenCV's double arithmetic does.
func RotationMatrix(cx, cy, degrees float64) Affine {
	pi := math.Pi
	rad := degrees * (pi / 180)
	alpha, beta := math.Cos(rad), math.Sin(rad)
	cx, cy = f32(cx), f32(cy)
	return Affine{
		alpha, beta, float64((1-alpha)*cx) - float64(beta*cy),
		-beta, alpha, float64(beta*cx) + float64((1-alpha)*cy),
	}
}

func f32(v float64) float64 { return float64(float32(v)) }
