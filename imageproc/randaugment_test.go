package imageproc

import (
	"math/rand/v2"
	"testing"
)

func TestAutoContrastAndEqualizeMatchTheNumpyRestatement(t *testing.T) {
	g := loadAugmentGoldens(t)
	for _, c := range g.Tones {
		src := goldenImage(t, c.Width, c.Height, c.Pixels)
		assertSameImage(t, c.Name+"/autocontrast", AutoContrast(src), goldenImage(t, c.Width, c.Height, c.AutoContrast))
		assertSameImage(t, c.Name+"/equalize", Equalize(src), goldenImage(t, c.Width, c.Height, c.Equalize))
	}
}

// grey builds a one-row image whose three channels are given separately.
func channels(r, g, b []uint8) *RGBImage {
	img := NewRGBImage(len(r), 1)
	for i := range r {
		img.Pix[3*i], img.Pix[3*i+1], img.Pix[3*i+2] = r[i], g[i], b[i]
	}
	return img
}

func channel(img *RGBImage, c int) []uint8 {
	out := make([]uint8, img.Width*img.Height)
	for i := range out {
		out[i] = img.Pix[3*i+c]
	}
	return out
}

// Channel R reaches 0, so it is stretched by 255/200 and truncated: 50 → 63.75 → 63,
// and even the maximum, 200·(255/200) = 254.99999999999997 in float64, truncates to
// 254 (numpy gives the same).
// Channel G's minimum is 10: BLIP's uint8 negation makes the offset (256−10)·255/190,
// so the whole channel turns 255. Channel B is constant and left alone.
func TestAutoContrastStretchesFromZeroAndWhitensAChannelAboveZero(t *testing.T) {
	img := channels([]uint8{0, 50, 100, 200}, []uint8{10, 60, 150, 200}, []uint8{40, 40, 40, 40})
	got := AutoContrast(img)
	for c, want := range [][]uint8{{0, 63, 127, 254}, {255, 255, 255, 255}, {40, 40, 40, 40}} {
		if g := channel(got, c); string(g) != string(want) {
			t.Errorf("channel %d = %v, want %v", c, g, want)
		}
	}
}

// 1020 pixels: 510 at level 10, 255 at 20, 255 at 30. The last used level (30) is
// left out: step = 765/255 = 3. Level 10 → (1 + 0)/3 = 0, level 20 → (1 + 510)/3 = 170,
// level 30 → (1 + 765)/3 = 255.
func TestEqualizeOnAKnownHistogram(t *testing.T) {
	img := NewRGBImage(34, 30)
	for i := range 34 * 30 {
		v := uint8(10)
		switch {
		case i >= 765:
			v = 30
		case i >= 510:
			v = 20
		}
		img.Pix[3*i], img.Pix[3*i+1], img.Pix[3*i+2] = v, 9, uint8(i%2*100)
	}
	got := Equalize(img)
	want := map[uint8]uint8{10: 0, 20: 170, 30: 255}
	for i := range 34 * 30 {
		if g := got.Pix[3*i]; g != want[img.Pix[3*i]] {
			t.Fatalf("pixel %d level %d → %d, want %d", i, img.Pix[3*i], g, want[img.Pix[3*i]])
		}
		// G has one level (step 0) and stays; B: step = 510/255 = 2, level 0 → 1/2 = 0,
		// level 100 → (1 + 510)/2 = 255.
		if got.Pix[3*i+1] != 9 {
			t.Fatalf("one-level channel changed: %d", got.Pix[3*i+1])
		}
		if wantB := uint8(i % 2 * 255); got.Pix[3*i+2] != wantB {
			t.Fatalf("pixel %d B = %d, want %d", i, got.Pix[3*i+2], wantB)
		}
	}
}

func TestIdentityBrightnessAndSharpnessLeaveTheImageAlone(t *testing.T) {
	src := pattern5()
	for _, op := range []RandAugmentOp{OpIdentity, OpBrightness, OpSharpness} {
		for _, sign := range []int8{1, -1} {
			assertSameImage(t, op.String(), AppliedOp{Op: op, Sign: sign}.Apply(src), src)
		}
	}
}

// Over many draws every op of the ten is picked alike, with replacement, and each
// applies about half the time.
func TestRandAugmentDrawsTenOpsAlikeEachHalfTheTime(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const images = 20000
	ra := RandAugment{N: 2}
	var counts [numRandAugmentOps]int
	signs := 0
	applied := 0
	for range images {
		ops := ra.Draw(rng)
		if len(ops) > 2 {
			t.Fatalf("%d ops drawn with N = 2", len(ops))
		}
		for _, op := range ops {
			counts[op.Op]++
			signs += int(op.Sign)
			if op.Sign != 1 && op.Sign != -1 {
				t.Fatalf("sign %d", op.Sign)
			}
		}
		applied += len(ops)
	}
	// 40000 draws, each applied with p 0.5: mean 20000, sd 100.
	if applied < 19500 || applied > 20500 {
		t.Errorf("%d ops applied of 40000 draws, want about 20000", applied)
	}
	for op, n := range counts {
		// mean 2000, sd about 42
		if n < 1800 || n > 2200 {
			t.Errorf("%v applied %d times, want about 2000", RandAugmentOp(op), n)
		}
	}
	if signs < -500 || signs > 500 {
		t.Errorf("signs sum to %d over %d ops: not balanced", signs, applied)
	}
}
