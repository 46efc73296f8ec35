package imageproc

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// The goldens under testdata/augment come from testdata/augment/make_goldens.py:
// OpenCV 4.6's cv2.warpAffine (Debian python3-opencv) on the matrices BLIP's
// randaugment.py builds, and a numpy restatement of its AutoContrast and Equalize.

type augmentGoldens struct {
	OpenCV string `json:"opencv"`
	Warps  []struct {
		Name          string
		Width, Height int
		Pixels        string
		Cases         []struct {
			Name   string
			Matrix []float64
			Fill   []uint8
			Pixels string
		}
	}
	Tones []struct {
		Name                   string
		Width, Height          int
		Pixels                 string
		AutoContrast, Equalize string
	}
}

func loadAugmentGoldens(t *testing.T) augmentGoldens {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "augment", "goldens.json"))
	if err != nil {
		t.Fatal(err)
	}
	var g augmentGoldens
	if err := json.Unmarshal(data, &g); err != nil {
		t.Fatalf("goldens.json: %v", err)
	}
	if len(g.Warps) == 0 || len(g.Tones) == 0 {
		t.Fatal("goldens.json holds no cases")
	}
	return g
}

func goldenImage(t *testing.T, w, h int, b64 string) *RGBImage {
	t.Helper()
	pix, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		t.Fatal(err)
	}
	if len(pix) != 3*w*h {
		t.Fatalf("golden image holds %d bytes, want %d", len(pix), 3*w*h)
	}
	return &RGBImage{Width: w, Height: h, Pix: pix}
}

// assertSameImage fails with the first differing pixels.
func assertSameImage(t *testing.T, what string, got, want *RGBImage) {
	t.Helper()
	if got.Width != want.Width || got.Height != want.Height {
		t.Fatalf("%s: %dx%d, want %dx%d", what, got.Width, got.Height, want.Width, want.Height)
	}
	bad := 0
	for i := range want.Pix {
		if got.Pix[i] != want.Pix[i] {
			if bad < 5 {
				p := i / 3
				t.Errorf("%s: pixel (%d,%d) channel %d = %d, want %d", what, p%want.Width, p/want.Width, i%3, got.Pix[i], want.Pix[i])
			}
			bad++
		}
	}
	if bad > 0 {
		t.Errorf("%s: %d of %d samples differ", what, bad, len(want.Pix))
	}
}

func TestWarpAffineMatchesOpenCVBitForBit(t *testing.T) {
	g := loadAugmentGoldens(t)
	for _, im := range g.Warps {
		src := goldenImage(t, im.Width, im.Height, im.Pixels)
		for _, c := range im.Cases {
			t.Run(im.Name+"/"+c.Name, func(t *testing.T) {
				var m Affine
				copy(m[:], c.Matrix)
				want := goldenImage(t, im.Width, im.Height, c.Pixels)
				assertSameImage(t, "WarpAffine", WarpAffine(src, m, [3]uint8(c.Fill)), want)
			})
		}
	}
}

// The op functions must build BLIP's exact matrices (float32 shear and translation,
// getRotationMatrix2D) for their outputs to be the goldens.
func TestGeometricOpsAtBLIPMagnitudesMatchOpenCV(t *testing.T) {
	g := loadAugmentGoldens(t)
	for _, im := range g.Warps {
		src := goldenImage(t, im.Width, im.Height, im.Pixels)
		ops := map[string]func() *RGBImage{
			"shear_x_0.15":   func() *RGBImage { return ShearX(src, ShearMagnitude, AugmentFill) },
			"shear_x_-0.15":  func() *RGBImage { return ShearX(src, -ShearMagnitude, AugmentFill) },
			"shear_y_0.15":   func() *RGBImage { return ShearY(src, ShearMagnitude, AugmentFill) },
			"shear_y_-0.15":  func() *RGBImage { return ShearY(src, -ShearMagnitude, AugmentFill) },
			"translate_x_5":  func() *RGBImage { return TranslateX(src, TranslateMagnitude, AugmentFill) },
			"translate_x_-5": func() *RGBImage { return TranslateX(src, -TranslateMagnitude, AugmentFill) },
			"translate_y_5":  func() *RGBImage { return TranslateY(src, TranslateMagnitude, AugmentFill) },
			"translate_y_-5": func() *RGBImage { return TranslateY(src, -TranslateMagnitude, AugmentFill) },
			"rotate_15":      func() *RGBImage { return Rotate(src, RotateMagnitude, AugmentFill) },
			"rotate_-15":     func() *RGBImage { return Rotate(src, -RotateMagnitude, AugmentFill) },
			"translate_x_2":  func() *RGBImage { return TranslateX(src, 2, AugmentFill) },
			"shear_y_0.5":    func() *RGBImage { return ShearY(src, 0.5, AugmentFill) },
		}
		found := 0
		for _, c := range im.Cases {
			op, ok := ops[c.Name]
			if !ok {
				continue
			}
			found++
			want := goldenImage(t, im.Width, im.Height, c.Pixels)
			assertSameImage(t, im.Name+"/"+c.Name, op(), want)
			if c.Name == "rotate_15" || c.Name == "rotate_-15" {
				deg := RotateMagnitude
				if c.Name == "rotate_-15" {
					deg = -deg
				}
				m := RotationMatrix(float64(im.Width)/2, float64(im.Height)/2, deg)
				for i := range m {
					if m[i] != c.Matrix[i] {
						t.Errorf("%s: RotationMatrix[%d] = %v, cv2.getRotationMatrix2D gives %v", im.Name, i, m[i], c.Matrix[i])
					}
				}
			}
		}
		if found != len(ops) {
			t.Errorf("%s: %d of %d op cases found in the goldens", im.Name, found, len(ops))
		}
	}
}

// pattern5 is a 5×5 image whose channels say where a pixel came from:
// R = 10·y + x, G = 100 + x, B = 200 + y.
func pattern5() *RGBImage {
	img := NewRGBImage(5, 5)
	for y := range 5 {
		for x := range 5 {
			i := 3 * (5*y + x)
			img.Pix[i], img.Pix[i+1], img.Pix[i+2] = uint8(10*y+x), uint8(100+x), uint8(200+y)
		}
	}
	return img
}

func px(img *RGBImage, x, y int) [3]uint8 {
	i := 3 * (y*img.Width + x)
	return [3]uint8(img.Pix[i : i+3])
}

func TestTranslateXMovesContentLeftAndFillsTheRight(t *testing.T) {
	src := pattern5()
	got := TranslateX(src, 2, AugmentFill)
	for y := range 5 {
		for x := range 5 {
			want := AugmentFill
			if x+2 < 5 {
				want = px(src, x+2, y)
			}
			if px(got, x, y) != want {
				t.Errorf("(%d,%d) = %v, want %v", x, y, px(got, x, y), want)
			}
		}
	}
}

func TestTranslateYByMinusOneMovesContentDown(t *testing.T) {
	src := pattern5()
	got := TranslateY(src, -1, AugmentFill)
	for y := range 5 {
		for x := range 5 {
			want := AugmentFill
			if y >= 1 {
				want = px(src, x, y-1)
			}
			if px(got, x, y) != want {
				t.Errorf("(%d,%d) = %v, want %v", x, y, px(got, x, y), want)
			}
		}
	}
}

// A shear of 0.5 samples row y at x − y/2: odd rows fall half-way between two
// pixels, whose equal weights 2^14 each round the mean up: (a + b + 1) >> 1; the
// tap left of column 0 reads the fill.
func TestShearXHalfBlendsNeighboursWithTheFill(t *testing.T) {
	src := pattern5()
	fill := [3]uint8{7, 9, 11}
	got := ShearX(src, 0.5, fill)
	at := func(x, y int) [3]uint8 {
		if x < 0 {
			return fill
		}
		return px(src, x, y)
	}
	for y := range 5 {
		for x := range 5 {
			var want [3]uint8
			shift := y / 2
			if y%2 == 0 {
				want = at(x-shift, y)
			} else {
				a, b := at(x-shift-1, y), at(x-shift, y)
				for c := range 3 {
					want[c] = uint8((int(a[c]) + int(b[c]) + 1) >> 1)
				}
			}
			if px(got, x, y) != want {
				t.Errorf("(%d,%d) = %v, want %v", x, y, px(got, x, y), want)
			}
		}
	}
}

// cv2 rotates about (W/2, H/2) = (2.5, 2.5), not the centre pixel (2, 2): a quarter
// turn counter-clockwise takes dst(x, y) from src(5 − y, x), so row 0 reads column 5,
// outside the image, and is all fill.
func TestRotate90AboutHalfSizeLeavesAFillRow(t *testing.T) {
	src := pattern5()
	got := Rotate(src, 90, AugmentFill)
	for y := range 5 {
		for x := range 5 {
			want := AugmentFill
			if y >= 1 {
				want = px(src, 5-y, x)
			}
			if px(got, x, y) != want {
				t.Errorf("(%d,%d) = %v, want %v", x, y, px(got, x, y), want)
			}
		}
	}
}

func TestWarpAffineIdentityAndSingularMatrix(t *testing.T) {
	src := pattern5()
	assertSameImage(t, "identity", WarpAffine(src, Affine{1, 0, 0, 0, 1, 0}, AugmentFill), src)
	// OpenCV inverts a singular matrix to zero: every pixel samples src(0, 0).
	got := WarpAffine(src, Affine{1, 1, 0, 1, 1, 0}, AugmentFill)
	for y := range 5 {
		for x := range 5 {
			if px(got, x, y) != px(src, 0, 0) {
				t.Fatalf("(%d,%d) = %v, want src(0,0) %v", x, y, px(got, x, y), px(src, 0, 0))
			}
		}
	}
}

func ExampleRotationMatrix() {
	m := RotationMatrix(112, 112, 15)
	fmt.Printf("%.6f %.6f %.6f\n%.6f %.6f %.6f\n", m[0], m[1], m[2], m[3], m[4], m[5])
	// Output:
	// 0.965926 0.258819 -25.171426
	// -0.258819 0.965926 32.804041
}
