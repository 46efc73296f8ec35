package imageproc

import (
	"math/rand/v2"
	"reflect"
	"testing"
)

// Over many draws a crop fits the image, and its area and aspect stay in range up to
// the rounding of w and h to whole pixels (±0.5 each).
func TestRandomResizedCropAreaAndAspectStayInRange(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, sz := range [][2]int{{640, 480}, {300, 300}, {224, 500}, {57, 41}} {
		w, h := sz[0], sz[1]
		for _, scale := range [][2]float64{{PretrainMinScale, 1}, {FinetuneMinScale, 1}} {
			area := float64(w * h)
			minFrac := 1.0
			for range 5000 {
				b := RandomResizedCropBox(w, h, scale, [2]float64{3.0 / 4, 4.0 / 3}, rng)
				if b.X < 0 || b.Y < 0 || b.W <= 0 || b.H <= 0 || b.X+b.W > w || b.Y+b.H > h {
					t.Fatalf("%dx%d: crop %+v does not fit", w, h, b)
				}
				cw, ch := float64(b.W), float64(b.H)
				if (cw+0.5)*(ch+0.5) < scale[0]*area || (cw-0.5)*(ch-0.5) > area {
					t.Fatalf("%dx%d scale %v: crop %+v has area %.0f of %.0f", w, h, scale, b, cw*ch, area)
				}
				fallback := b.W == w && b.H == h
				if !fallback && ((cw+0.5)/(ch-0.5) < 3.0/4 || (cw-0.5)/(ch+0.5) > 4.0/3) {
					t.Fatalf("%dx%d: crop %+v has aspect %.3f", w, h, b, cw/ch)
				}
				minFrac = min(minFrac, cw*ch/area)
			}
			// The draws must reach down near the low end of the scale range.
			if minFrac > scale[0]+0.05 {
				t.Errorf("%dx%d scale %v: smallest crop is %.3f of the area", w, h, scale, minFrac)
			}
		}
	}
}

// A 100×10 strip has no crop of aspect ≤ 4/3 with area ≥ 20% that fits its height,
// so all ten tries miss and torchvision's fallback takes the central 13×10 (10·4/3
// rounded), at column (100−13)/2 = 43.
func TestRandomResizedCropFallsBackToTheCentralCrop(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	want := CropBox{X: 43, Y: 0, W: 13, H: 10}
	for range 100 {
		if b := RandomResizedCropBox(100, 10, [2]float64{0.2, 1}, [2]float64{3.0 / 4, 4.0 / 3}, rng); b != want {
			t.Fatalf("crop %+v, want the fallback %+v", b, want)
		}
	}
	// Tall: 10×100 → height round(10/(3/4)) = 13, centred at row 43.
	if b := RandomResizedCropBox(10, 100, [2]float64{0.2, 1}, [2]float64{3.0 / 4, 4.0 / 3}, rng); b != (CropBox{X: 0, Y: 43, W: 10, H: 13}) {
		t.Fatalf("tall crop %+v", b)
	}
}

func TestCropCopiesTheBox(t *testing.T) {
	src := pattern5()
	got := Crop(src, CropBox{X: 1, Y: 2, W: 3, H: 2})
	for y := range 2 {
		for x := range 3 {
			if px(got, x, y) != px(src, x+1, y+2) {
				t.Fatalf("(%d,%d) = %v, want %v", x, y, px(got, x, y), px(src, x+1, y+2))
			}
		}
	}
}

func TestFlipHorizontalMirrorsEveryRow(t *testing.T) {
	src := pattern5()
	got := FlipHorizontal(src)
	for y := range 5 {
		for x := range 5 {
			if px(got, x, y) != px(src, 4-x, y) {
				t.Fatalf("(%d,%d) = %v, want %v", x, y, px(got, x, y), px(src, 4-x, y))
			}
		}
	}
	assertSameImage(t, "flip twice", FlipHorizontal(got), src)
}

func noiseImage(w, h int, seed uint64) *RGBImage {
	rng := rand.New(rand.NewPCG(seed, seed))
	img := NewRGBImage(w, h)
	for i := range img.Pix {
		img.Pix[i] = uint8(rng.IntN(256))
	}
	return img
}

func TestTrainTransformIsDeterministicForASeed(t *testing.T) {
	img := noiseImage(97, 71, 1)
	tr := NewTrainTransform(32, PretrainMinScale)
	run := func(seed uint64) (TrainDraw, []float32) {
		dst := make([]float32, 3*32*32)
		d, err := tr.TransformInto(dst, img, rand.New(rand.NewPCG(seed, 0)))
		if err != nil {
			t.Fatal(err)
		}
		return d, dst
	}
	d1, p1 := run(42)
	d2, p2 := run(42)
	if !reflect.DeepEqual(d1, d2) || !reflect.DeepEqual(p1, p2) {
		t.Fatal("the same seed gave different draws or pixels")
	}
	differ := 0
	for seed := range uint64(20) {
		d, _ := run(100 + seed)
		if !reflect.DeepEqual(d, d1) {
			differ++
		}
	}
	if differ < 19 {
		t.Errorf("only %d of 20 other seeds drew a different transform", differ)
	}
}

// TransformInto is Draw, then crop → bicubic resize → flip → ops, then Normalize.
func TestTransformIntoIsTheDrawnPipelineNormalised(t *testing.T) {
	img := noiseImage(120, 90, 2)
	tr := NewTrainTransform(24, FinetuneMinScale)
	for seed := range uint64(30) {
		dst := make([]float32, 3*24*24)
		d, err := tr.TransformInto(dst, img, rand.New(rand.NewPCG(seed, 9)))
		if err != nil {
			t.Fatal(err)
		}
		want := ResizeBicubic(Crop(img, d.Crop), 24, 24)
		if d.Flip {
			want = FlipHorizontal(want)
		}
		for _, op := range d.Ops {
			want = op.Apply(want)
		}
		if !reflect.DeepEqual(dst, Normalize(want, CLIPMean, CLIPStd)) {
			t.Fatalf("seed %d: pixels differ from the drawn pipeline %+v", seed, d)
		}
	}
}

func TestTrainTransformRefusesBadSettingsAndBuffers(t *testing.T) {
	bad := []TrainTransform{
		{Size: 0, Scale: [2]float64{0.2, 1}, Ratio: [2]float64{0.75, 1.33}},
		{Size: 8, Scale: [2]float64{0, 1}, Ratio: [2]float64{0.75, 1.33}},
		{Size: 8, Scale: [2]float64{0.5, 1.5}, Ratio: [2]float64{0.75, 1.33}},
		{Size: 8, Scale: [2]float64{0.5, 1}, Ratio: [2]float64{2, 1}},
	}
	for _, tr := range bad {
		if tr.Validate() == nil {
			t.Errorf("%+v validated", tr)
		}
	}
	tr := NewTrainTransform(8, PretrainMinScale)
	if err := tr.Validate(); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.TransformInto(make([]float32, 10), pattern5(), rand.New(rand.NewPCG(1, 1))); err == nil {
		t.Error("a short dst was accepted")
	}
}

func BenchmarkTrainTransform224(b *testing.B) {
	img := noiseImage(500, 375, 3)
	tr := NewTrainTransform(224, PretrainMinScale)
	dst := make([]float32, 3*224*224)
	rng := rand.New(rand.NewPCG(1, 1))
	for b.Loop() {
		if _, err := tr.TransformInto(dst, img, rng); err != nil {
			b.Fatal(err)
		}
	}
}
