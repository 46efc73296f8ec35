package torch

import (
	"strings"
	"testing"
	"time"
)

func init() {
	childRoles["gradsync"] = gradSyncRole
	childRoles["gradsync-mismatch"] = gradSyncMismatchRole
}

// tinyMLP is a two-layer perceptron plus a parameter U that only rank 0's loss uses, so
// a bucket sees a parameter the backward pass of rank 1 never reaches.
type tinyMLP struct{ U, W1, B1, W2, B2 *Tensor }

func newTinyMLP(t testing.TB) *tinyMLP {
	g := NewGenerator(7)
	defer g.Close()
	m := &tinyMLP{U: Randn(g, Float32, CPU, 4), W1: Randn(g, Float32, CPU, 8, 6), B1: Randn(g, Float32, CPU, 8),
		W2: Randn(g, Float32, CPU, 3, 8), B2: Randn(g, Float32, CPU, 3)}
	for _, p := range m.params() {
		if err := p.SetRequiresGrad(true); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

func (m *tinyMLP) params() []*Tensor { return []*Tensor{m.U, m.W1, m.B1, m.W2, m.B2} }

// loss of micro-batch `micro` of `rank`, a squared error on seeded data.
func (m *tinyMLP) loss(rank, micro int) *Tensor {
	g := NewGenerator(uint64(100 + 10*rank + micro))
	defer g.Close()
	x, y := Randn(g, Float32, CPU, 5, 6), Randn(g, Float32, CPU, 5, 3)
	d := x.Linear(m.W1, m.B1).Relu().Linear(m.W2, m.B2).Sub(y)
	l := d.Mul(d).Mean(false)
	if rank == 0 {
		l = l.Add(m.U.Mul(m.U).Sum(false).MulScalar(0.5))
	}
	return l
}

func (m *tinyMLP) grads(t testing.TB) [][]float64 {
	var out [][]float64
	for i, p := range m.params() {
		g, err := p.Grad()
		if err != nil || g == nil {
			t.Fatalf("parameter %d: grad %v, %v", i, g, err)
		}
		v, err := g.ToDType(Float64).Float64s()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	return out
}

func (m *tinyMLP) zeroGrad(t testing.TB) {
	for _, p := range m.params() {
		if err := p.ZeroGrad(); err != nil {
			t.Fatal(err)
		}
	}
}

type gradSyncResult struct {
	Buckets      int
	Step1, Step2 [][]float64
	Early1       int
	Early2       int
	WaitSeconds  float64
	NewSyncError string
	BarrierError string
}

func gradSyncRole(t *testing.T, pg *ProcessGroup, out string) {
	m := newTinyMLP(t)
	// 64-byte buckets put every parameter in a bucket of its own: five all-reduces.
	sync, err := NewGradSync(pg, m.params(), 64)
	if err != nil {
		t.Fatal(err)
	}
	defer sync.Close()
	r := pg.Rank()
	var res gradSyncResult
	res.Buckets = sync.Buckets()
	check := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	check(sync.Prepare())
	check(m.loss(r, 0).Backward())
	check(sync.Finish())
	res.Step1, res.Early1 = m.grads(t), sync.LastStep().LaunchedInBackward
	m.zeroGrad(t)

	// Gradient accumulation: micro-batch 1 stays local, micro-batch 2 carries the sum.
	check(m.loss(r, 1).Backward())
	check(sync.Prepare())
	check(m.loss(r, 2).Backward())
	check(sync.Finish())
	res.Step2, res.Early2 = m.grads(t), sync.LastStep().LaunchedInBackward
	res.WaitSeconds = sync.LastStep().Wait.Seconds()
	writeResult(t, out, pg, res)
}

// The reference is one process computing the gradient of the ranks' mean loss.
func TestGradSyncAveragesGradientsOverRanks(t *testing.T) {
	procs, out := startRanks(t, "gradsync", 2, 20*time.Second)

	m := newTinyMLP(t)
	if err := m.loss(0, 0).Add(m.loss(1, 0)).MulScalar(0.5).Backward(); err != nil {
		t.Fatal(err)
	}
	want1 := m.grads(t)
	m.zeroGrad(t)
	if err := m.loss(0, 1).Add(m.loss(0, 2)).Add(m.loss(1, 1)).Add(m.loss(1, 2)).MulScalar(0.5).Backward(); err != nil {
		t.Fatal(err)
	}
	want2 := m.grads(t)

	waitAll(t, procs, 60*time.Second)
	names := []string{"U", "W1", "B1", "W2", "B2"}
	for r := 0; r < 2; r++ {
		var res gradSyncResult
		readResult(t, out, r, &res)
		for i, name := range names {
			if !distClose(res.Step1[i], want1[i], 1e-5) {
				t.Errorf("rank %d step 1 grad %s = %v, want %v", r, name, res.Step1[i], want1[i])
			}
			if !distClose(res.Step2[i], want2[i], 1e-5) {
				t.Errorf("rank %d step 2 (accumulated) grad %s = %v, want %v", r, name, res.Step2[i], want2[i])
			}
		}
		// Rank 1 never reaches U, the last bucket: it is launched by Finish.
		wantEarly := 5
		if r == 1 {
			wantEarly = 4
		}
		if res.Buckets != 5 || res.Early1 != wantEarly || res.Early2 != wantEarly {
			t.Errorf("rank %d: %d buckets, %d and %d launched during backward; want 5 buckets, %d launched",
				r, res.Buckets, res.Early1, res.Early2, wantEarly)
		}
		t.Logf("rank %d: %d of %d buckets all-reduced during backward; Finish waited %.1f ms",
			r, res.Early1, res.Buckets, res.WaitSeconds*1e3)
	}
}

func gradSyncMismatchRole(t *testing.T, pg *ProcessGroup, out string) {
	params := newTinyMLP(t).params()
	if pg.Rank() == 1 {
		params = params[1:]
	}
	var res gradSyncResult
	sync, err := NewGradSync(pg, params, 64)
	if err != nil {
		res.NewSyncError = err.Error()
	} else {
		defer sync.Close()
		if err := pg.Barrier(); err != nil {
			res.BarrierError = err.Error()
		}
	}
	writeResult(t, out, pg, res)
	if pg.Rank() == 1 {
		pg.Close() // rank 0 learns of it in its barrier
	}
}

func TestGradSyncRefusesDifferentParameterListsAcrossRanks(t *testing.T) {
	procs, out := startRanks(t, "gradsync-mismatch", 2, 10*time.Second)
	waitAll(t, procs, 60*time.Second)
	var r0, r1 gradSyncResult
	readResult(t, out, 0, &r0)
	readResult(t, out, 1, &r1)
	want := "rank 1 registered 4 parameters (83 elements, 4 buckets) but rank 0 registered 5 (87 elements, 5 buckets)"
	if !strings.Contains(r1.NewSyncError, want) {
		t.Errorf("rank 1: %q, want it to contain %q", r1.NewSyncError, want)
	}
	if r0.NewSyncError != "" || r0.BarrierError == "" {
		t.Errorf("rank 0: sync error %q, barrier error %q: want the barrier to fail once rank 1 left", r0.NewSyncError, r0.BarrierError)
	}
	t.Logf("rank 0's barrier: %s", r0.BarrierError)
}
