package blip

import (
	"fmt"
	"math"

	"github.com/capfilt/capfilt/torch"
)

// interpolatePositions resizes a ViT position embedding [1, 1+g², D] to [1, 1+grid², D]:
// the class row is kept, the g×g grid of rows is resized with bicubic interpolation
// exactly as torch's interpolate(mode="bicubic", align_corners=False, size=...) does
// (source = (dst+0.5)·in/out − 0.5, unclamped; taps floor−1…floor+2 with clamped
// indices; cubic convolution with A = −0.75). It runs in Go on the host: the table is
// small and this keeps the arithmetic independent of the library under test.
func interpolatePositions(pe *torch.Tensor, grid int) (*torch.Tensor, error) {
	s := pe.Shape()
	if len(s) != 3 || s[0] != 1 {
		return nil, fmt.Errorf("position embedding shape %v, want [1, 1+N, D]", s)
	}
	n, d := int(s[1]-1), int(s[2])
	g := int(math.Round(math.Sqrt(float64(n))))
	if g*g != n {
		return nil, fmt.Errorf("position embedding has %d patch rows, not a square grid", n)
	}
	host := pe.To(torch.CPU, torch.Float32)
	vals, err := host.Float32s()
	if host != pe {
		host.Free()
	}
	if err != nil {
		return nil, err
	}
	out := resizePositionGrid(vals, g, grid, d)
	t := torch.FromFloat32(out, 1, int64(1+grid*grid), int64(d))
	if pe.Device() != torch.CPU || pe.DType() != torch.Float32 {
		moved := t.To(pe.Device(), pe.DType())
		t.Free()
		t = moved
	}
	return t, t.Err()
}

// resizePositionGrid resizes rows laid out as [1 + in·in, d] (class row first, grid
// row-major) to [1 + out·out, d].
func resizePositionGrid(vals []float32, in, out, d int) []float32 {
	res := make([]float32, (1+out*out)*d)
	copy(res, vals[:d])
	if in == out {
		copy(res, vals)
		return res
	}
	src := vals[d:]
	taps := bicubicTaps(in, out)
	// Along x first, then along y, as torch's separable kernel does.
	tmp := make([]float64, in*out*d)
	for y := 0; y < in; y++ {
		for x := 0; x < out; x++ {
			tp := taps[x]
			for c := 0; c < d; c++ {
				var acc float64
				for k := 0; k < 4; k++ {
					acc += tp.w[k] * float64(src[(y*in+tp.idx[k])*d+c])
				}
				tmp[(y*out+x)*d+c] = acc
			}
		}
	}
	dst := res[d:]
	for y := 0; y < out; y++ {
		tp := taps[y]
		for x := 0; x < out; x++ {
			for c := 0; c < d; c++ {
				var acc float64
				for k := 0; k < 4; k++ {
					acc += tp.w[k] * tmp[(tp.idx[k]*out+x)*d+c]
				}
				dst[(y*out+x)*d+c] = float32(acc)
			}
		}
	}
	return res
}

type bicubicTap struct {
	idx [4]int
	w   [4]float64
}

func bicubicTaps(in, out int) []bicubicTap {
	const a = -0.75
	near := func(x float64) float64 { return ((a+2)*x-(a+3))*x*x + 1 }  // |x| ≤ 1
	far := func(x float64) float64 { return ((a*x-5*a)*x+8*a)*x - 4*a } // 1 < |x| < 2
	scale := float64(in) / float64(out)
	taps := make([]bicubicTap, out)
	for i := range taps {
		src := (float64(i)+0.5)*scale - 0.5
		f := math.Floor(src)
		t := src - f
		base := int(f)
		taps[i].w = [4]float64{far(t + 1), near(t), near(1 - t), far(2 - t)}
		for k := 0; k < 4; k++ {
			taps[i].idx[k] = min(max(base-1+k, 0), in-1)
		}
	}
	return taps
}
