package torch

import (
	"math"
	"sort"
	"testing"
)

// The expected values here come from plain Go loops or from hand computation, never
// from the libtorch call under test.

func refMatMul(a, b []float32, n, k, m int) []float32 {
	out := make([]float32, n*m)
	for i := 0; i < n; i++ {
		for j := 0; j < m; j++ {
			var s float64
			for p := 0; p < k; p++ {
				s += float64(a[i*k+p]) * float64(b[p*m+j])
			}
			out[i*m+j] = float32(s)
		}
	}
	return out
}

func TestElementwiseOpsMatchHandValues(t *testing.T) {
	x := FromFloat32([]float32{-2, -0.5, 0, 1, 3}, 5)
	y := FromFloat32([]float32{1, 2, 4, 8, 16}, 5)
	erfGelu := func(v float64) float32 { return float32(v * 0.5 * (1 + math.Erf(v/math.Sqrt2))) }
	tanhGelu := func(v float64) float32 {
		return float32(0.5 * v * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(v+0.044715*v*v*v))))
	}
	xs := []float64{-2, -0.5, 0, 1, 3}
	mapf := func(f func(float64) float32) []float32 {
		out := make([]float32, len(xs))
		for i, v := range xs {
			out[i] = f(v)
		}
		return out
	}
	cases := []struct {
		name string
		got  *Tensor
		want []float32
	}{
		{"add", x.Add(y), []float32{-1, 1.5, 4, 9, 19}},
		{"sub", x.Sub(y), []float32{-3, -2.5, -4, -7, -13}},
		{"mul", x.Mul(y), []float32{-2, -1, 0, 8, 48}},
		{"div", x.Div(y), []float32{-2, -0.25, 0, 0.125, 0.1875}},
		{"pow", y.PowScalar(0.5), []float32{1, float32(math.Sqrt2), 2, float32(math.Sqrt(8)), 4}},
		{"rsub", x.RSubScalar(1), []float32{3, 1.5, 1, 0, -2}},
		{"rdiv", y.RDivScalar(8), []float32{8, 4, 2, 1, 0.5}},
		{"scalar add", x.AddScalar(1), []float32{-1, 0.5, 1, 2, 4}},
		{"neg", x.Neg(), []float32{2, 0.5, 0, -1, -3}},
		{"abs", x.Abs(), []float32{2, 0.5, 0, 1, 3}},
		{"relu", x.Relu(), []float32{0, 0, 0, 1, 3}},
		{"exp", x.Exp(), mapf(func(v float64) float32 { return float32(math.Exp(v)) })},
		{"log", y.Log(), []float32{0, float32(math.Ln2), float32(2 * math.Ln2), float32(3 * math.Ln2), float32(4 * math.Ln2)}},
		{"sqrt", y.Sqrt(), []float32{1, float32(math.Sqrt2), 2, float32(math.Sqrt(8)), 4}},
		{"rsqrt", y.Rsqrt(), []float32{1, float32(1 / math.Sqrt2), 0.5, float32(1 / math.Sqrt(8)), 0.25}},
		{"tanh", x.Tanh(), mapf(func(v float64) float32 { return float32(math.Tanh(v)) })},
		{"sigmoid", x.Sigmoid(), mapf(func(v float64) float32 { return float32(1 / (1 + math.Exp(-v))) })},
		{"gelu (erf)", x.Gelu(), mapf(func(v float64) float32 { return erfGelu(v) })},
		{"gelu (tanh)", x.GeluTanh(), mapf(func(v float64) float32 { return tanhGelu(v) })},
		{"maximum", x.Maximum(FromFloat32([]float32{0}, 1)), []float32{0, 0, 0, 1, 3}},
		{"clamp", x.Clamp(-1, 1), []float32{-1, -0.5, 0, 1, 1}},
		{"clamp min", x.ClampMin(0.5), []float32{0.5, 0.5, 0.5, 1, 3}},
		{"cumsum", x.Cumsum(0), []float32{-2, -2.5, -2.5, -1.5, 1.5}},
		{"flip", x.Flip(0), []float32{3, 1, 0, -0.5, -2}},
		{"where", Where(x.GtScalar(0), x, y), []float32{1, 2, 4, 1, 3}},
		{"masked fill", x.MaskedFill(x.LtScalar(0), -100), []float32{-100, -100, 0, 1, 3}},
		{"broadcast add", FromFloat32([]float32{1, 2}, 2, 1).Add(FromFloat32([]float32{10, 20, 30}, 3)), []float32{11, 21, 31, 12, 22, 32}},
	}
	for _, c := range cases {
		got, err := c.got.Float32s()
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		assertClose(t, c.name, got, c.want, 1e-6)
	}
	eq, _ := x.EqScalar(0).Bools()
	if !eq[2] || eq[0] {
		t.Fatalf("eq %v", eq)
	}
}

func TestMatMulAndLinearMatchGoLoops(t *testing.T) {
	a, b := randFloats(1, 7*5), randFloats(2, 5*3)
	got := mustF32(t, FromFloat32(a, 7, 5).MatMul(FromFloat32(b, 5, 3)))
	assertClose(t, "matmul", got, refMatMul(a, b, 7, 5, 3), 1e-5)

	// Batched: [2,7,5]·[2,5,3].
	a2, b2 := randFloats(3, 2*7*5), randFloats(4, 2*5*3)
	bm := mustF32(t, FromFloat32(a2, 2, 7, 5).BMM(FromFloat32(b2, 2, 5, 3)))
	want := append(refMatMul(a2[:35], b2[:15], 7, 5, 3), refMatMul(a2[35:], b2[15:], 7, 5, 3)...)
	assertClose(t, "bmm", bm, want, 1e-5)

	// Linear: x·wᵀ + b with w [out=3, in=5].
	x, w, bias := randFloats(5, 4*5), randFloats(6, 3*5), randFloats(7, 3)
	wt := make([]float32, 5*3)
	for o := 0; o < 3; o++ {
		for i := 0; i < 5; i++ {
			wt[i*3+o] = w[o*5+i]
		}
	}
	ref := refMatMul(x, wt, 4, 5, 3)
	noBias := append([]float32(nil), ref...)
	for r := 0; r < 4; r++ {
		for o := 0; o < 3; o++ {
			ref[r*3+o] += bias[o]
		}
	}
	X, W := FromFloat32(x, 4, 5), FromFloat32(w, 3, 5)
	assertClose(t, "linear", mustF32(t, X.Linear(W, FromFloat32(bias, 3))), ref, 1e-5)
	assertClose(t, "linear without bias", mustF32(t, X.Linear(W, nil)), noBias, 1e-5)
	// A [..., in] input (folded to one GEMM with the bias inside) gives the same rows.
	Y := X.Reshape(2, 2, 5).Linear(W, FromFloat32(bias, 3))
	if err := Y.MustShape("3-d linear", 2, 2, 3); err != nil {
		t.Fatal(err)
	}
	assertClose(t, "3-d linear", mustF32(t, Y), ref, 1e-5)
}

func TestConv2dMatchesGoLoop(t *testing.T) {
	// [1,2,5,5] input, [3,2,2,2] kernel, stride 2, padding 1.
	const C, H, O, K, S, P = 2, 5, 3, 2, 2, 1
	x, w, b := randFloats(1, C*H*H), randFloats(2, O*C*K*K), randFloats(3, O)
	outH := (H+2*P-K)/S + 1
	want := make([]float32, O*outH*outH)
	for o := 0; o < O; o++ {
		for i := 0; i < outH; i++ {
			for j := 0; j < outH; j++ {
				s := float64(b[o])
				for c := 0; c < C; c++ {
					for ki := 0; ki < K; ki++ {
						for kj := 0; kj < K; kj++ {
							y, xx := i*S-P+ki, j*S-P+kj
							if y < 0 || y >= H || xx < 0 || xx >= H {
								continue
							}
							s += float64(x[c*H*H+y*H+xx]) * float64(w[((o*C+c)*K+ki)*K+kj])
						}
					}
				}
				want[(o*outH+i)*outH+j] = float32(s)
			}
		}
	}
	got := FromFloat32(x, 1, C, H, H).Conv2d(FromFloat32(w, O, C, K, K), FromFloat32(b, O), S, P)
	if err := got.MustShape("conv", 1, O, int64(outH), int64(outH)); err != nil {
		t.Fatal(err)
	}
	assertClose(t, "conv2d", mustF32(t, got), want, 1e-5)
}

func TestNormsSoftmaxAndEmbeddingMatchGoLoops(t *testing.T) {
	const R, D = 3, 6
	x, g, b := randFloats(1, R*D), randFloats(2, D), randFloats(3, D)
	ln := make([]float32, R*D)
	l2 := make([]float32, R*D)
	sm := make([]float32, R*D)
	lsm := make([]float32, R*D)
	for r := 0; r < R; r++ {
		row := x[r*D : (r+1)*D]
		var mean, vr, sq, mx float64
		mx = math.Inf(-1)
		for _, v := range row {
			mean += float64(v) / D
			sq += float64(v) * float64(v)
			mx = math.Max(mx, float64(v))
		}
		for _, v := range row {
			vr += (float64(v) - mean) * (float64(v) - mean) / D
		}
		var z float64
		for _, v := range row {
			z += math.Exp(float64(v) - mx)
		}
		for i, v := range row {
			ln[r*D+i] = float32((float64(v)-mean)/math.Sqrt(vr+1e-5)*float64(g[i]) + float64(b[i]))
			l2[r*D+i] = float32(float64(v) / math.Sqrt(sq))
			sm[r*D+i] = float32(math.Exp(float64(v)-mx) / z)
			lsm[r*D+i] = float32(float64(v) - mx - math.Log(z))
		}
	}
	X := FromFloat32(x, R, D)
	assertClose(t, "layer_norm", mustF32(t, X.LayerNorm(FromFloat32(g, D), FromFloat32(b, D), 1e-5)), ln, 2e-6)
	assertClose(t, "normalize", mustF32(t, X.Normalize(-1, 1e-12)), l2, 1e-6)
	assertClose(t, "softmax", mustF32(t, X.Softmax(-1)), sm, 1e-6)
	assertClose(t, "log_softmax", mustF32(t, X.LogSoftmax(-1)), lsm, 1e-6)
	// The normalize clamp: a zero row stays zero instead of becoming NaN.
	assertClose(t, "normalize zero row", mustF32(t, Zeros(Float32, CPU, 1, 3).Normalize(-1, 1e-12)), []float32{0, 0, 0}, 0)

	table := randFloats(4, 5*D)
	e := Embedding(FromFloat32(table, 5, D), FromInt64([]int64{4, 0, 4}, 3))
	want := append(append(append([]float32(nil), table[4*D:5*D]...), table[:D]...), table[4*D:5*D]...)
	assertClose(t, "embedding", mustF32(t, e), want, 0)
}

func TestReductionsSortAndTopK(t *testing.T) {
	x := FromFloat32([]float32{3, 1, 4, 1, 5, 9, 2, 6}, 2, 4)
	cases := []struct {
		name string
		got  *Tensor
		want []float32
	}{
		{"sum all", x.Sum(false), []float32{31}},
		{"sum dim 1", x.Sum(false, 1), []float32{9, 22}},
		{"sum dim 0 keepdim", x.Sum(true, 0), []float32{8, 10, 6, 7}},
		{"mean dim 1", x.Mean(false, 1), []float32{2.25, 5.5}},
		{"amax dim 1", x.Amax(false, 1), []float32{4, 9}},
		{"amin all", x.Amin(false), []float32{1}},
	}
	for _, c := range cases {
		assertClose(t, c.name, mustF32(t, c.got), c.want, 1e-6)
	}
	v, i := x.Max(1, false)
	idx, _ := i.Int64s()
	assertClose(t, "max values", mustF32(t, v), []float32{4, 9}, 0)
	if idx[0] != 2 || idx[1] != 1 {
		t.Fatalf("max indices %v", idx)
	}
	am, _ := x.Argmax(1, false).Int64s()
	if am[0] != 2 || am[1] != 1 {
		t.Fatalf("argmax %v", am)
	}
	tv, ti := x.TopK(2, 1, true)
	tix, _ := ti.Int64s()
	assertClose(t, "topk", mustF32(t, tv), []float32{4, 3, 9, 6}, 0)
	if tix[0] != 2 || tix[1] != 0 || tix[2] != 1 || tix[3] != 3 {
		t.Fatalf("topk indices %v", tix)
	}
	// Sort is stable: the two 1s keep their order.
	sv, si := FromFloat32([]float32{1, 3, 1, 2}, 4).Sort(0, true)
	six, _ := si.Int64s()
	assertClose(t, "sort", mustF32(t, sv), []float32{3, 2, 1, 1}, 0)
	if six[2] != 0 || six[3] != 2 {
		t.Fatalf("sort must be stable: %v", six)
	}
	// Against sort.SliceStable on random data.
	r := randFloats(9, 50)
	for k := 0; k < 50; k += 7 {
		r[k] = 0.25 // ties
	}
	order := make([]int, 50)
	for k := range order {
		order[k] = k
	}
	sort.SliceStable(order, func(a, b int) bool { return r[order[a]] > r[order[b]] })
	_, ri := FromFloat32(r, 50).Sort(0, true)
	rix, _ := ri.Int64s()
	for k := range order {
		if int(rix[k]) != order[k] {
			t.Fatalf("sort position %d: %d, want %d", k, rix[k], order[k])
		}
	}
}

func TestShapeOps(t *testing.T) {
	x := FromFloat32([]float32{0, 1, 2, 3, 4, 5}, 2, 3)
	cases := []struct {
		name  string
		got   *Tensor
		shape []int64
		want  []float32
	}{
		{"transpose", x.Transpose(0, 1), []int64{3, 2}, []float32{0, 3, 1, 4, 2, 5}},
		{"permute", x.Reshape(1, 2, 3).Permute(2, 0, 1), []int64{3, 1, 2}, []float32{0, 3, 1, 4, 2, 5}},
		{"reshape -1", x.Reshape(-1), []int64{6}, []float32{0, 1, 2, 3, 4, 5}},
		{"view", x.View(3, 2), []int64{3, 2}, []float32{0, 1, 2, 3, 4, 5}},
		{"unsqueeze", x.Unsqueeze(1), []int64{2, 1, 3}, []float32{0, 1, 2, 3, 4, 5}},
		{"squeeze", x.Unsqueeze(0).Squeeze(0), []int64{2, 3}, []float32{0, 1, 2, 3, 4, 5}},
		{"expand", FromFloat32([]float32{7, 8}, 2, 1).Expand(2, 3), []int64{2, 3}, []float32{7, 7, 7, 8, 8, 8}},
		{"repeat", FromFloat32([]float32{7, 8}, 2).Repeat(2), []int64{4}, []float32{7, 8, 7, 8}},
		{"narrow", x.Narrow(1, 1, 2), []int64{2, 2}, []float32{1, 2, 4, 5}},
		{"select", x.Select(0, 1), []int64{3}, []float32{3, 4, 5}},
		{"cat", Cat([]*Tensor{x, x.Narrow(0, 0, 1)}, 0), []int64{3, 3}, []float32{0, 1, 2, 3, 4, 5, 0, 1, 2}},
		{"stack", Stack([]*Tensor{x.Select(0, 0), x.Select(0, 1)}, 1), []int64{3, 2}, []float32{0, 3, 1, 4, 2, 5}},
		{"index_select", x.IndexSelect(1, FromInt64([]int64{2, 0}, 2)), []int64{2, 2}, []float32{2, 0, 5, 3}},
		{"gather", x.Gather(1, FromInt64([]int64{2, 2, 0, 1}, 2, 2)), []int64{2, 2}, []float32{2, 2, 3, 4}},
		{"scatter", Zeros(Float32, CPU, 2, 3).Scatter(1, FromInt64([]int64{1, 0}, 2, 1), FromFloat32([]float32{9, 8}, 2, 1)), []int64{2, 3}, []float32{0, 9, 0, 8, 0, 0}},
		{"contiguous", x.Transpose(0, 1).Contiguous().View(6), []int64{6}, []float32{0, 3, 1, 4, 2, 5}},
	}
	for _, c := range cases {
		if err := c.got.MustShape(c.name, c.shape...); err != nil {
			t.Error(err)
			continue
		}
		assertClose(t, c.name, mustF32(t, c.got), c.want, 0)
	}
	parts, err := x.Split(2, 1)
	if err != nil || len(parts) != 2 || parts[1].Size(1) != 1 {
		t.Fatalf("split: %v %v", parts, err)
	}
	assertClose(t, "split tail", mustF32(t, parts[1]), []float32{2, 5}, 0)
	chunks, err := x.Chunk(3, 1)
	if err != nil || len(chunks) != 3 {
		t.Fatalf("chunk: %v %v", chunks, err)
	}
	assertClose(t, "chunk", mustF32(t, chunks[1]), []float32{1, 4}, 0)
}

func TestLossesMatchTheirDefinitions(t *testing.T) {
	const N, C = 4, 5
	logits := randFloats(1, N*C)
	for i := range logits {
		logits[i] *= 3
	}
	target := []int64{2, -100, 0, 4}
	refCE := func(eps float64) float64 {
		var total float64
		var n int
		for r := 0; r < N; r++ {
			if target[r] == -100 {
				continue
			}
			row := logits[r*C : (r+1)*C]
			mx := math.Inf(-1)
			for _, v := range row {
				mx = math.Max(mx, float64(v))
			}
			var z float64
			for _, v := range row {
				z += math.Exp(float64(v) - mx)
			}
			logp := func(c int) float64 { return float64(row[c]) - mx - math.Log(z) }
			var uniform float64
			for c := 0; c < C; c++ {
				uniform += -logp(c) / C
			}
			total += (1-eps)*(-logp(int(target[r]))) + eps*uniform
			n++
		}
		return total / float64(n)
	}
	L, T := FromFloat32(logits, N, C), FromInt64(target, N)
	for _, eps := range []float64{0, 0.1} {
		got, err := CrossEntropy(L, T, -100, eps, ReduceMean).Item()
		if err != nil {
			t.Fatal(err)
		}
		if want := refCE(eps); math.Abs(got-want) > 1e-5 {
			t.Fatalf("cross entropy (ε=%v) = %v, want %v", eps, got, want)
		}
	}
	per := mustF32(t, CrossEntropy(L, T, -100, 0, ReduceNone))
	if per[1] != 0 {
		t.Fatalf("an ignored target must cost 0, got %v", per[1])
	}

	// Soft targets: a one-hot soft target equals the hard loss.
	soft := make([]float32, N*C)
	for r, c := range []int{2, 1, 0, 4} {
		soft[r*C+c] = 1
	}
	s, _ := SoftCrossEntropy(L, FromFloat32(soft, N, C)).Item()
	h, _ := CrossEntropy(L, FromInt64([]int64{2, 1, 0, 4}, N), -100, 0, ReduceMean).Item()
	if math.Abs(s-h) > 1e-5 {
		t.Fatalf("soft CE with one-hot targets %v, hard CE %v", s, h)
	}
}

// refAttention is softmax(q·kᵀ/√d + mask)·v for one head, in float64.
func refAttention(q, k, v []float32, lq, lk, d int, mask []float32, causal bool) []float32 {
	out := make([]float32, lq*d)
	for i := 0; i < lq; i++ {
		scores := make([]float64, lk)
		mx := math.Inf(-1)
		for j := 0; j < lk; j++ {
			var s float64
			for p := 0; p < d; p++ {
				s += float64(q[i*d+p]) * float64(k[j*d+p])
			}
			s /= math.Sqrt(float64(d))
			if mask != nil {
				s += float64(mask[j])
			}
			if causal && j > i {
				s = math.Inf(-1)
			}
			scores[j] = s
			mx = math.Max(mx, s)
		}
		var z float64
		for j := range scores {
			scores[j] = math.Exp(scores[j] - mx)
			z += scores[j]
		}
		for p := 0; p < d; p++ {
			var acc float64
			for j := 0; j < lk; j++ {
				acc += scores[j] / z * float64(v[j*d+p])
			}
			out[i*d+p] = float32(acc)
		}
	}
	return out
}

func TestAttentionMatchesDefinition(t *testing.T) {
	const L, D = 5, 4
	q, k, v := randFloats(1, L*D), randFloats(2, L*D), randFloats(3, L*D)
	Q, K, V := FromFloat32(q, 1, 1, L, D), FromFloat32(k, 1, 1, L, D), FromFloat32(v, 1, 1, L, D)
	pad := []float32{0, 0, 0, -10000, -10000} // BLIP's additive padding mask
	M := FromFloat32(pad, 1, 1, 1, L)
	boolMask := FromBool([]bool{true, true, true, false, false}, 1, 1, 1, L)
	for _, impl := range []AttentionImpl{AttentionBest, AttentionExplicit} {
		assertClose(t, "plain", mustF32(t, Attention(Q, K, V, nil, false, 0, impl)), refAttention(q, k, v, L, L, D, nil, false), 1e-6)
		assertClose(t, "additive mask", mustF32(t, Attention(Q, K, V, M, false, 0, impl)), refAttention(q, k, v, L, L, D, pad, false), 1e-6)
		assertClose(t, "bool mask", mustF32(t, Attention(Q, K, V, boolMask, false, 0, impl)), refAttention(q, k, v, L, L, D, pad, false), 1e-6)
		assertClose(t, "causal", mustF32(t, Attention(Q, K, V, nil, true, 0, impl)), refAttention(q, k, v, L, L, D, nil, true), 1e-6)
		assertClose(t, "causal + mask", mustF32(t, Attention(Q, K, V, M, true, 0, impl)), refAttention(q, k, v, L, L, D, pad, true), 1e-6)
	}
	// Cross attention: 2 queries over 5 keys.
	assertClose(t, "cross", mustF32(t, Attention(Q.Narrow(2, 0, 2), K, V, nil, false, 0, AttentionBest)),
		refAttention(q[:2*D], k, v, 2, L, D, nil, false), 1e-6)
}

func TestDropoutAndMultinomial(t *testing.T) {
	ManualSeed(1)
	x := Ones(Float32, CPU, 10000)
	if got := mustF32(t, x.Dropout(0.3, false)); got[0] != 1 || got[9999] != 1 {
		t.Fatal("dropout in eval mode must be the identity")
	}
	d := mustF32(t, x.Dropout(0.3, true))
	zeros := 0
	for _, v := range d {
		switch {
		case v == 0:
			zeros++
		case math.Abs(float64(v)-1/0.7) > 1e-6:
			t.Fatalf("kept value %v, want 1/0.7", v)
		}
	}
	if zeros < 2800 || zeros > 3200 {
		t.Fatalf("dropout p=0.3 zeroed %d of 10000", zeros)
	}
	probs := FromFloat32([]float32{0, 0.2, 0.8, 0}, 1, 4)
	draw := func(seed uint64) []int64 {
		g := NewGenerator(seed)
		defer g.Close()
		v, err := probs.Multinomial(4000, true, g).Int64s()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	a, b := draw(5), draw(5)
	counts := [4]int{}
	for i, v := range a {
		if v != b[i] {
			t.Fatal("same generator seed must give the same draws")
		}
		counts[v]++
	}
	if counts[0] != 0 || counts[3] != 0 || counts[2] < 3050 || counts[2] > 3350 {
		t.Fatalf("multinomial counts %v for probs 0,.2,.8,0", counts)
	}
}
