package imageproc

import (
	"fmt"
	"math/rand/v2"
)

// RandAugmentOp names one operation of BLIP's RandAugment list.
type RandAugmentOp uint8

// BLIP's augs list (data/__init__.py), in its order: a drawn index picks from it.
const (
	OpIdentity RandAugmentOp = iota
	OpAutoContrast
	OpBrightness
	OpSharpness
	OpEqualize
	OpShearX
	OpShearY
	OpTranslateX
	OpTranslateY
	OpRotate
	numRandAugmentOps
)

var opNames = [numRandAugmentOps]string{"Identity", "AutoContrast", "Brightness", "Sharpness",
	"Equalize", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"}

func (o RandAugmentOp) String() string {
	if o < numRandAugmentOps {
		return opNames[o]
	}
	return fmt.Sprintf("RandAugmentOp(%d)", o)
}

// Magnitudes at BLIP's M = 5 of MAX_LEVEL 10 (transform/randaugment.py): shear
// 5/10·0.3, translation 5/10·10 px, rotation 5/10·30°, each with a random sign.
// Brightness and Sharpness take the factor 5/10·1.8 + 0.1 = 1.0, at which both are
// the identity (randaugment.py returns the image unchanged for a factor of exactly 1),
// so at M = 5 they only use up a draw.
const (
	ShearMagnitude     = 0.15
	TranslateMagnitude = 5.0
	RotateMagnitude    = 15.0
)

// AugmentFill is the colour RandAugment's geometric ops fill uncovered pixels with.
var AugmentFill = [3]uint8{128, 128, 128}

// RandAugment is BLIP's RandomAugment(N, 5, isPIL=True, augs=[...]): N ops drawn with
// replacement from the ten of RandAugmentOp, each applied with probability 0.5.
type RandAugment struct {
	N int // ops drawn per image; BLIP uses 2
}

// AppliedOp is one op that passed its probability 0.5, with the sign of its magnitude
// (+1 or −1; unused by the ops without one).
type AppliedOp struct {
	Op   RandAugmentOp
	Sign int8
}

// Draw picks the ops for one image. Randomness is drawn in a fixed order (op, whether
// it applies, sign) so that one seeded source always gives the same ops.
func (ra RandAugment) Draw(rng *rand.Rand) []AppliedOp {
	var ops []AppliedOp
	for range ra.N {
		op := RandAugmentOp(rng.IntN(int(numRandAugmentOps)))
		apply := rng.Float64() < 0.5
		sign := int8(1)
		if rng.Float64() < 0.5 {
			sign = -1
		}
		if apply {
			ops = append(ops, AppliedOp{Op: op, Sign: sign})
		}
	}
	return ops
}

// Apply runs one op on img at BLIP's magnitude. The result may share img's pixels
// when the op leaves them unchanged.
func (a AppliedOp) Apply(img *RGBImage) *RGBImage {
	s := float64(a.Sign)
	switch a.Op {
	case OpAutoContrast:
		return AutoContrast(img)
	case OpEqualize:
		return Equalize(img)
	case OpShearX:
		return ShearX(img, s*ShearMagnitude, AugmentFill)
	case OpShearY:
		return ShearY(img, s*ShearMagnitude, AugmentFill)
	case OpTranslateX:
		return TranslateX(img, s*TranslateMagnitude, AugmentFill)
	case OpTranslateY:
		return TranslateY(img, s*TranslateMagnitude, AugmentFill)
	case OpRotate:
		return Rotate(img, s*RotateMagnitude, AugmentFill)
	}
	// Identity, and Brightness and Sharpness at factor 1.0.
	return img
}

// AutoContrast is BLIP's autocontrast_func (cutoff 0), per channel with lo and hi its
// smallest and largest value: nothing when hi ≤ lo, else the lookup table
// trunc(clip(i·s + (−lo)·s, 0, 255)) with s = 255/(hi−lo), computed in float64.
//
// randaugment.py holds lo as a numpy uint8, so −lo wraps to 256−lo: for lo = 0 the
// table is the intended stretch i·255/hi, but any channel whose minimum is above 0
// has every table entry above 255 and turns entirely white. That is what BLIP
// trained with, and it is kept here on purpose.
func AutoContrast(img *RGBImage) *RGBImage {
	out := NewRGBImage(img.Width, img.Height)
	for c := range 3 {
		lo, hi := uint8(255), uint8(0)
		for i := c; i < len(img.Pix); i += 3 {
			lo, hi = min(lo, img.Pix[i]), max(hi, img.Pix[i])
		}
		var lut [256]uint8
		for i := range lut {
			lut[i] = uint8(i)
		}
		if hi > lo {
			scale := 255 / float64(hi-lo)
			offset := float64(uint8(-lo)) * scale
			for i := range lut {
				v := min(max(float64(float64(i)*scale)+offset, 0), 255)
				lut[i] = uint8(v)
			}
		}
		for i := c; i < len(img.Pix); i += 3 {
			out.Pix[i] = lut[img.Pix[i]]
		}
	}
	return out
}

// Equalize is PIL's ImageOps.equalize, which BLIP's equalize_func reproduces: per
// channel, step = (pixels outside the last used level) / 255, and level i maps to
// (step/2 + pixels below level i) / step, capped at 255, in integer division; a
// channel with step 0 (one used level, or too few pixels) is left as it is.
func Equalize(img *RGBImage) *RGBImage {
	out := NewRGBImage(img.Width, img.Height)
	for c := range 3 {
		var hist [256]int64
		for i := c; i < len(img.Pix); i += 3 {
			hist[img.Pix[i]]++
		}
		last := 0
		var total int64
		for v, n := range hist {
			if n > 0 {
				last = v
			}
			total += n
		}
		step := (total - hist[last]) / 255
		var lut [256]uint8
		for i := range lut {
			lut[i] = uint8(i)
		}
		if step > 0 {
			acc := step / 2
			for i := range lut {
				lut[i] = uint8(min(acc/step, 255))
				acc += hist[i]
			}
		}
		for i := c; i < len(img.Pix); i += 3 {
			out.Pix[i] = lut[img.Pix[i]]
		}
	}
	return out
}
