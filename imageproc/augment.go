package imageproc

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// BLIP's train transform (data/__init__.py, blip-spec §7):
//
//	RandomResizedCrop(S, scale=(min_scale, 1), ratio=(3/4, 4/3), bicubic)
//	RandomHorizontalFlip(p=0.5)
//	RandomAugment(2, 5, isPIL=True, augs=[Identity, AutoContrast, Brightness, Sharpness,
//	    Equalize, ShearX, ShearY, TranslateX, TranslateY, Rotate])
//	ToTensor(), Normalize(CLIP mean, std)
//
// Every random choice comes from a *rand.Rand the caller passes in, and all of an
// image's choices are drawn before any pixel is touched (TrainTransform.Draw), so a
// caller that seeds the source per sample reproduces every crop exactly.

// Crop scales of BLIP's two recipes: pretraining crops 20–100% of the image area,
// finetuning (captioning, retrieval) 50–100%.
const (
	PretrainMinScale = 0.2
	FinetuneMinScale = 0.5
)

// TrainTransform is BLIP's train-time image transform at one output size.
type TrainTransform struct {
	Size    int        // output width and height
	Scale   [2]float64 // crop area as a fraction of the image area
	Ratio   [2]float64 // crop aspect ratio (width/height) range
	Augment RandAugment
}

// NewTrainTransform is BLIP's transform at size with crop scale (minScale, 1).
func NewTrainTransform(size int, minScale float64) TrainTransform {
	return TrainTransform{Size: size, Scale: [2]float64{minScale, 1}, Ratio: [2]float64{3.0 / 4, 4.0 / 3}, Augment: RandAugment{N: 2}}
}

// Validate reports a transform that cannot run.
func (t TrainTransform) Validate() error {
	switch {
	case t.Size <= 0:
		return fmt.Errorf("train transform: size %d is not positive", t.Size)
	case !(t.Scale[0] > 0 && t.Scale[0] <= t.Scale[1] && t.Scale[1] <= 1):
		return fmt.Errorf("train transform: crop scale %v is not a range within (0, 1]", t.Scale)
	case !(t.Ratio[0] > 0 && t.Ratio[0] <= t.Ratio[1]):
		return fmt.Errorf("train transform: crop ratio %v is not a positive range", t.Ratio)
	case t.Augment.N < 0:
		return fmt.Errorf("train transform: RandAugment N %d is negative", t.Augment.N)
	}
	return nil
}

// CropBox is a crop in source pixels: columns [X, X+W), rows [Y, Y+H).
type CropBox struct{ X, Y, W, H int }

// TrainDraw is every random choice the transform makes for one image.
type TrainDraw struct {
	Crop CropBox
	Flip bool
	Ops  []AppliedOp // the RandAugment ops that apply, in order
}

// Draw makes the random choices for an image of w×h pixels.
func (t TrainTransform) Draw(w, h int, rng *rand.Rand) TrainDraw {
	d := TrainDraw{Crop: RandomResizedCropBox(w, h, t.Scale, t.Ratio, rng)}
	d.Flip = rng.Float64() < 0.5
	d.Ops = t.Augment.Draw(rng)
	return d
}

// Apply runs the drawn transform on img and returns the Size×Size 8-bit result (what
// ToTensor then reads). img is not modified.
func (t TrainTransform) Apply(img *RGBImage, d TrainDraw) *RGBImage {
	out := ResizeBicubic(Crop(img, d.Crop), t.Size, t.Size)
	if d.Flip {
		out = FlipHorizontal(out)
	}
	for _, op := range d.Ops {
		out = op.Apply(out)
	}
	return out
}

// TransformInto draws and applies the transform to img and writes the normalised
// 3×Size×Size CHW result into dst, which must hold 3·Size·Size values.
func (t TrainTransform) TransformInto(dst []float32, img *RGBImage, rng *rand.Rand) (TrainDraw, error) {
	if len(dst) != 3*t.Size*t.Size {
		return TrainDraw{}, fmt.Errorf("train transform: dst holds %d values, want 3×%d×%d", len(dst), t.Size, t.Size)
	}
	if img.Width <= 0 || img.Height <= 0 {
		return TrainDraw{}, fmt.Errorf("train transform: empty %dx%d image", img.Width, img.Height)
	}
	d := t.Draw(img.Width, img.Height, rng)
	normalizeInto(dst, t.Apply(img, d), CLIPMean, CLIPStd)
	return d, nil
}

// RandomResizedCropBox is torchvision's RandomResizedCrop.get_params: up to ten tries
// of a target area uniform in scale·w·h and an aspect ratio log-uniform in ratio,
// rounded (half to even, as Python's round) to a crop that must fit, placed uniformly;
// after ten misses, the central crop of the whole image clamped to the ratio range.
func RandomResizedCropBox(w, h int, scale, ratio [2]float64, rng *rand.Rand) CropBox {
	area := float64(w) * float64(h)
	logLo, logHi := math.Log(ratio[0]), math.Log(ratio[1])
	for range 10 {
		target := area * uniform(rng, scale[0], scale[1])
		aspect := math.Exp(uniform(rng, logLo, logHi))
		cw := int(math.RoundToEven(math.Sqrt(target * aspect)))
		ch := int(math.RoundToEven(math.Sqrt(target / aspect)))
		if 0 < cw && cw <= w && 0 < ch && ch <= h {
			y := rng.IntN(h - ch + 1)
			x := rng.IntN(w - cw + 1)
			return CropBox{X: x, Y: y, W: cw, H: ch}
		}
	}
	inRatio := float64(w) / float64(h)
	cw, ch := w, h
	switch {
	case inRatio < ratio[0]:
		ch = int(math.RoundToEven(float64(cw) / ratio[0]))
	case inRatio > ratio[1]:
		cw = int(math.RoundToEven(float64(ch) * ratio[1]))
	}
	return CropBox{X: (w - cw) / 2, Y: (h - ch) / 2, W: cw, H: ch}
}

func uniform(rng *rand.Rand, lo, hi float64) float64 {
	return lo + (hi-lo)*rng.Float64()
}

// Crop copies box out of img (PIL's Image.crop inside the image).
func Crop(img *RGBImage, box CropBox) *RGBImage {
	out := NewRGBImage(box.W, box.H)
	for y := range box.H {
		src := img.Pix[3*((box.Y+y)*img.Width+box.X):][:3*box.W]
		copy(out.Pix[3*y*box.W:], src)
	}
	return out
}

// FlipHorizontal mirrors img left to right.
func FlipHorizontal(img *RGBImage) *RGBImage {
	out := NewRGBImage(img.Width, img.Height)
	w := img.Width
	for y := range img.Height {
		src := img.Pix[3*y*w : 3*(y+1)*w]
		dst := out.Pix[3*y*w : 3*(y+1)*w]
		for x := range w {
			copy(dst[3*(w-1-x):3*(w-x)], src[3*x:3*x+3])
		}
	}
	return out
}
