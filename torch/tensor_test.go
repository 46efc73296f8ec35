package torch

import (
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// randFloats gives reproducible test data in [-1, 1).
func randFloats(seed uint64, n int) []float32 {
	r := rand.New(rand.NewPCG(seed, 7))
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.Float64()*2 - 1)
	}
	return v
}

func mustF32(t *testing.T, x *Tensor) []float32 {
	t.Helper()
	v, err := x.Float32s()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func assertClose(t *testing.T, what string, got, want []float32, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range got {
		if d := math.Abs(float64(got[i]) - float64(want[i])); d > tol || math.IsNaN(float64(got[i])) != math.IsNaN(float64(want[i])) {
			t.Fatalf("%s[%d] = %v, want %v (|diff| %.3g > %.3g)", what, i, got[i], want[i], d, tol)
		}
	}
}

func TestFromSlicesRoundTripEveryDType(t *testing.T) {
	f := FromFloat32([]float32{1.5, -2, 3.25, 0, 7, 8}, 2, 3)
	if got := f.Shape(); len(got) != 2 || got[0] != 2 || got[1] != 3 {
		t.Fatalf("shape %v", got)
	}
	if f.DType() != Float32 || f.Device() != CPU || f.Numel() != 6 || f.Dim() != 2 {
		t.Fatalf("metadata %v", f)
	}
	assertClose(t, "float32", mustF32(t, f), []float32{1.5, -2, 3.25, 0, 7, 8}, 0)

	i, err := FromInt64([]int64{-5, 1 << 40, 3}, 3).Int64s()
	if err != nil || i[0] != -5 || i[1] != 1<<40 || i[2] != 3 {
		t.Fatalf("int64 %v %v", i, err)
	}
	u, err := FromUint8([]uint8{0, 255, 7}, 3).Uint8s()
	if err != nil || u[1] != 255 {
		t.Fatalf("uint8 %v %v", u, err)
	}
	b, err := FromBool([]bool{true, false}, 2).Bools()
	if err != nil || !b[0] || b[1] {
		t.Fatalf("bool %v %v", b, err)
	}
	d, err := FromFloat64([]float64{math.Pi}, 1).Float64s()
	if err != nil || d[0] != math.Pi {
		t.Fatalf("float64 %v %v", d, err)
	}
	// bfloat16 1.0 = 0x3F80, -2.0 = 0xC000; float16 1.0 = 0x3C00, 0.5 = 0x3800.
	bf := FromBits([]uint16{0x3F80, 0xC000}, BFloat16, 2)
	assertClose(t, "bf16→f32", mustF32(t, bf.ToDType(Float32)), []float32{1, -2}, 0)
	h := FromBits([]uint16{0x3C00, 0x3800}, Float16, 2)
	assertClose(t, "f16→f32", mustF32(t, h.ToDType(Float32)), []float32{1, 0.5}, 0)
	bits, err := FromFloat32([]float32{1, -2}, 2).ToDType(BFloat16).Bits()
	if err != nil || bits[0] != 0x3F80 || bits[1] != 0xC000 {
		t.Fatalf("f32→bf16 bits %x %v", bits, err)
	}
	if _, err := FromFloat32([]float32{1, 2, 3}, 2, 2).Float32s(); err == nil || !strings.Contains(err.Error(), "do not fill shape") {
		t.Fatalf("3 values in a 2x2 shape: %v", err)
	}
	if _, err := FromInt64([]int64{1}, 1).Float32s(); err == nil {
		t.Fatal("reading int64 as float32 must fail")
	}
	e := FromFloat32(nil, 0, 3)
	if e.Err() != nil || e.Numel() != 0 {
		t.Fatalf("empty tensor: %v", e)
	}
}

func TestFactoriesAndSeededRandomness(t *testing.T) {
	assertClose(t, "full", mustF32(t, Full(2.5, Float32, CPU, 2, 2)), []float32{2.5, 2.5, 2.5, 2.5}, 0)
	assertClose(t, "zeros", mustF32(t, Zeros(Float32, CPU, 3)), []float32{0, 0, 0}, 0)
	assertClose(t, "ones", mustF32(t, Ones(Float32, CPU, 2)), []float32{1, 1}, 0)
	a, _ := Arange(0, 5, 2, Int64, CPU).Int64s()
	if len(a) != 3 || a[2] != 4 {
		t.Fatalf("arange %v", a)
	}
	draw := func(seed uint64) []float32 {
		g := NewGenerator(seed)
		defer g.Close()
		return mustF32(t, Randn(g, Float32, CPU, 1000))
	}
	x, y, z := draw(1), draw(1), draw(2)
	assertClose(t, "same seed", x, y, 0)
	same := 0
	var sum, sq float64
	for i := range x {
		if x[i] == z[i] {
			same++
		}
		sum += float64(x[i])
		sq += float64(x[i]) * float64(x[i])
	}
	if same > 5 {
		t.Fatalf("seeds 1 and 2 share %d of 1000 draws", same)
	}
	if mean, std := sum/1000, math.Sqrt(sq/1000); math.Abs(mean) > 0.15 || math.Abs(std-1) > 0.1 {
		t.Fatalf("randn mean %.3f std %.3f", mean, std)
	}
	g := NewGenerator(3)
	u := mustF32(t, Rand(g, Float32, CPU, 1000))
	g.Close()
	for _, v := range u {
		if v < 0 || v >= 1 {
			t.Fatalf("rand gave %v", v)
		}
	}
	if err := Randn(g, Float32, CPU, 2).Err(); err == nil {
		t.Fatal("a closed generator must be an error")
	}
}

func TestErrorsFromLibtorchAreGoErrors(t *testing.T) {
	a := FromFloat32(randFloats(1, 6), 2, 3)
	b := FromFloat32(randFloats(2, 6), 2, 3)
	cases := []struct {
		name string
		got  *Tensor
		want string
	}{
		{"matmul shape mismatch", a.MatMul(b), "cannot be multiplied"},
		{"view of a transposed tensor", a.Transpose(0, 1).View(6), "view size is not compatible"},
		{"embedding index out of range", Embedding(a, FromInt64([]int64{5}, 1)), "index out of range"},
		{"cat of mismatched shapes", Cat([]*Tensor{a, FromFloat32(randFloats(3, 4), 2, 2)}, 0), "Sizes of tensors must match"},
		{"bad reshape", a.Reshape(4, 2), "invalid for input of size 6"},
		{"narrow past the end", a.Narrow(1, 2, 5), "start (2) + length (5) exceeds dimension size (3)"},
		{"bmm of 2-d tensors", a.BMM(b), "batch1 must be a 3D tensor"},
		{"layer norm of the wrong width", a.LayerNorm(FromFloat32([]float32{1, 1}, 2), nil, 1e-5), "normalized_shape"},
	}
	for _, c := range cases {
		err := c.got.Err()
		var te *Error
		if err == nil || !errors.As(err, &te) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want a *torch.Error containing %q", c.name, err, c.want)
		}
		if errors.Is(err, ErrOutOfMemory) {
			t.Errorf("%s: a shape error must not read as out of memory", c.name)
		}
	}
	// Errors are sticky: later ops report the first failure without calling libtorch.
	bad := a.MatMul(b)
	chain := bad.Add(a).Relu().Sum(false)
	if chain.Err() != bad.Err() {
		t.Fatalf("chained error %v, want %v", chain.Err(), bad.Err())
	}
	if _, err := chain.Float32s(); err != bad.Err() {
		t.Fatalf("reading a failed tensor: %v", err)
	}
}

func TestScopeFreesWhatItOwns(t *testing.T) {
	outer := NewScope()
	x := outer.Track(FromFloat32([]float32{1, 2, 3}, 3))
	param := FromFloat32([]float32{10, 20, 30}, 3) // unscoped, like a model weight
	y := x.Add(param)                              // joins outer through x
	if y.scope != outer || outer.Len() != 2 {
		t.Fatalf("result scope %p (outer %p), outer owns %d", y.scope, outer, outer.Len())
	}
	inner := outer.Child()
	z := inner.Ref(y).MulScalar(2) // deeper scope wins
	w := z.Add(x)
	if z.scope != inner || w.scope != inner {
		t.Fatal("results of an inner-scope operand must join the inner scope")
	}
	kept := inner.Keep(w)
	inner.Close()
	if err := z.Err(); !errors.Is(err, ErrFreed) {
		t.Fatalf("z after inner.Close: %v", err)
	}
	assertClose(t, "kept", mustF32(t, kept), []float32{23, 46, 69}, 0)
	if kept.scope != outer {
		t.Fatal("Keep in a child hands the tensor to the parent")
	}
	top := outer.Keep(y)
	outer.Close()
	if !errors.Is(kept.Err(), ErrFreed) || !errors.Is(x.Err(), ErrFreed) {
		t.Fatal("outer.Close must free what it owns")
	}
	assertClose(t, "kept past the top scope", mustF32(t, top), []float32{11, 22, 33}, 0)
	top.Free()
	top.Free() // twice is fine
	if !errors.Is(top.Err(), ErrFreed) {
		t.Fatal("Free must mark the tensor freed")
	}
	assertClose(t, "param untouched", mustF32(t, param), []float32{10, 20, 30}, 0)

	s := NewScope()
	bad := s.Ref(x) // x is freed
	if !errors.Is(bad.Err(), ErrFreed) {
		t.Fatalf("Ref of a freed tensor: %v", bad.Err())
	}
	m := s.Track(FromFloat32([]float32{1}, 1)).MatMul(s.Track(FromFloat32([]float32{1, 2}, 2)))
	if s.Err() == nil || s.Err() != m.Err() {
		t.Fatalf("scope error %v, op error %v", s.Err(), m.Err())
	}
	s.Close()
}

func TestMappedFileTensorsShareTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "w.bin")
	raw := make([]byte, 16+6*4)
	for i := 0; i < 6; i++ {
		binary.LittleEndian.PutUint32(raw[16+4*i:], math.Float32bits(float32(i)+0.5))
	}
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := MapFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if m.Size() != int64(len(raw)) {
		t.Fatalf("size %d", m.Size())
	}
	a := m.Tensor(16, Float32, []int64{2, 3}, nil)
	tr := m.Tensor(16, Float32, []int64{3, 2}, []int64{1, 3}) // the transpose, by strides
	m.Close()                                                 // views keep the mapping alive
	assertClose(t, "mapped", mustF32(t, a), []float32{0.5, 1.5, 2.5, 3.5, 4.5, 5.5}, 0)
	assertClose(t, "strided", mustF32(t, tr), []float32{0.5, 3.5, 1.5, 4.5, 2.5, 5.5}, 0)
	// Writing through a view changes memory, never the file.
	if err := a.Fill(9); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(path)
	if string(after) != string(raw) {
		t.Fatal("writing a mapped tensor changed the file")
	}
	m2, _ := MapFile(path)
	defer m2.Close()
	for _, c := range []struct {
		off   int64
		shape []int64
		want  string
	}{
		{16, []int64{7}, "runs past the end"},
		{18, []int64{1}, "not aligned"},
	} {
		if err := m2.Tensor(c.off, Float32, c.shape, nil).Err(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("offset %d shape %v: %v, want %q", c.off, c.shape, err, c.want)
		}
	}
	if _, err := MapFile(filepath.Join(t.TempDir(), "missing")); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("mapping a missing file: %v", err)
	}
}

func TestParseDeviceAndDType(t *testing.T) {
	for in, want := range map[string]Device{"cpu": CPU, "cuda": CUDA(0), "cuda:3": CUDA(3)} {
		if got, err := ParseDevice(in); err != nil || got != want {
			t.Errorf("ParseDevice(%q) = %v, %v", in, got, err)
		}
	}
	for _, bad := range []string{"gpu", "cuda:-1", "cuda:x", ""} {
		if _, err := ParseDevice(bad); err == nil {
			t.Errorf("ParseDevice(%q) must fail", bad)
		}
	}
	if d, err := ParseDType("bf16"); err != nil || d != BFloat16 {
		t.Fatalf("bf16: %v %v", d, err)
	}
	if _, err := ParseDType("float8"); err == nil {
		t.Fatal("float8 is not supported")
	}
}

func TestMachineInfo(t *testing.T) {
	if !strings.HasPrefix(Version(), "1.") && !strings.HasPrefix(Version(), "2.") {
		t.Fatalf("libtorch version %q", Version())
	}
	b, err := BLASInfo()
	if err != nil {
		t.Fatal(err)
	}
	if !b.IsOpenBLAS() {
		t.Fatalf("libtorch's BLAS is %v; scripts/setup.sh must install OpenBLAS", b)
	}
	if !CUDAAvailable() {
		if _, err := CUDADeviceName(0); err == nil {
			t.Fatal("device name of a missing CUDA device must be an error")
		}
		if _, err := CUDAMemoryStats(0); err == nil {
			t.Fatal("memory of a missing CUDA device must be an error")
		}
	}
	prev, prevBLAS := NumThreads(), BLASThreads()
	SetNumThreads(1)
	if NumThreads() != 1 || BLASThreads() != 1 {
		t.Fatalf("threads %d, BLAS threads %d after SetNumThreads(1)", NumThreads(), BLASThreads())
	}
	SetIntraOpThreads(prev)
	SetBLASThreads(prevBLAS)
	if NumThreads() != prev || BLASThreads() != prevBLAS {
		t.Fatalf("threads not restored: %d/%d, want %d/%d", NumThreads(), BLASThreads(), prev, prevBLAS)
	}
}
