package torch

import (
	"testing"
	"time"
)

func init() {
	childRoles["gathergrad"] = gatherGradRole
}

// gatherGradWeights is rank s's loss weights: loss_s = Σ w_s ⊙ AllGatherWithGrad(x).
func gatherGradWeights(s int) []float32 {
	w := make([]float32, 12)
	for i := range w {
		w[i] = float32((s+1)*(i+1)) * 0.5
	}
	return w
}

// gatherGradRole gathers x (2×3, rank-specific) with a gradient, weighs the result by
// this rank's weights, and records the gathered values and x's gradient.
func gatherGradRole(t *testing.T, pg *ProcessGroup, out string) {
	r := float64(pg.Rank())
	x := Arange(0, 6, 1, Float32, CPU).Reshape(2, 3).AddScalar(10 * r)
	if err := x.SetRequiresGrad(true); err != nil {
		t.Fatal(err)
	}
	y := pg.AllGatherWithGrad(x)
	w := FromFloat32(gatherGradWeights(pg.Rank()), 4, 3)
	if err := y.Mul(w).Sum(false).Backward(); err != nil {
		t.Fatal(err)
	}
	g, err := x.Grad()
	if err != nil || g == nil {
		t.Fatalf("no gradient: %v", err)
	}
	writeResult(t, out, pg, map[string][]float64{"gathered": distValues(t, y.Detach()), "grad": distValues(t, g)})
}

// AllGatherWithGrad gathers as AllGather does, and a rank's input gets the gradient of
// every rank's loss with respect to its rows (BLIP's all_gather_with_grad): here
// d(Σ_s loss_s)/dx_r = Σ_s w_s[rows of r].
func TestAllGatherWithGradSumsEveryRanksGradient(t *testing.T) {
	procs, out := startRanks(t, "gathergrad", 2, 20*time.Second)
	waitAll(t, procs, 60*time.Second)
	w0, w1 := gatherGradWeights(0), gatherGradWeights(1)
	for r := range 2 {
		var res map[string][]float64
		readResult(t, out, r, &res)
		gathered := []float64{0, 1, 2, 3, 4, 5, 10, 11, 12, 13, 14, 15}
		if !distClose(res["gathered"], gathered, 0) {
			t.Errorf("rank %d gathered %v, want %v", r, res["gathered"], gathered)
		}
		want := make([]float64, 6)
		for i := range want {
			want[i] = float64(w0[r*6+i] + w1[r*6+i])
		}
		if !distClose(res["grad"], want, 1e-6) {
			t.Errorf("rank %d gradient %v, want %v", r, res["grad"], want)
		}
	}
}
