package torch

// #include "capfilt_torch.h"
import "C"

func (t *Tensor) unary(op C.int, name string) *Tensor {
	if err := t.check(); err != nil {
		return errTensor(err)
	}
	var h C.ct_tensor
	return result(name, C.ct_unary(op, t.h, &h), h, t)
}

func (t *Tensor) Neg() *Tensor        { return t.unary(C.CT_NEG, "neg") }
func (t *Tensor) Exp() *Tensor        { return t.unary(C.CT_EXP, "exp") }
func (t *Tensor) Log() *Tensor        { return t.unary(C.CT_LOG, "log") }
func (t *Tensor) Sqrt() *Tensor       { return t.unary(C.CT_SQRT, "sqrt") }
func (t *Tensor) Rsqrt() *Tensor      { return t.unary(C.CT_RSQRT, "rsqrt") }
func (t *Tensor) Tanh() *Tensor       { return t.unary(C.CT_TANH, "tanh") }
func (t *Tensor) Sigmoid() *Tensor    { return t.unary(C.CT_SIGMOID, "sigmoid") }
func (t *Tensor) Relu() *Tensor       { return t.unary(C.CT_RELU, "relu") }
func (t *Tensor) Abs() *Tensor        { return t.unary(C.CT_ABS, "abs") }
func (t *Tensor) Contiguous() *Tensor { return t.unary(C.CT_CONTIGUOUS, "contiguous") }
func (t *Tensor) Clone() *Tensor      { return t.unary(C.CT_CLONE, "clone") }
func (t *Tensor) LogicalNot() *Tensor { return t.unary(C.CT_LOGICAL_NOT, "logical_not") }
func (t *Tensor) IsNaN() *Tensor      { return t.unary(C.CT_ISNAN, "isnan") }

// Detach returns t cut off from the autograd graph (same data).
func (t *Tensor) Detach() *Tensor { return t.unary(C.CT_DETACH, "detach") }

// Gelu is the exact form x·Φ(x) that BERT and ViT use.
func (t *Tensor) Gelu() *Tensor { return t.unary(C.CT_GELU_ERF, "gelu") }

// GeluTanh is the tanh approximation of Gelu.
func (t *Tensor) GeluTanh() *Tensor { return t.unary(C.CT_GELU_TANH, "gelu_tanh") }

func (t *Tensor) binary(op C.int, name string, o *Tensor) *Tensor {
	if err := firstErr(t, o); err != nil {
		return errTensor(err)
	}
	var h C.ct_tensor
	return result(name, C.ct_binary(op, t.h, o.h, &h), h, t, o)
}

// Elementwise ops broadcast like libtorch.
func (t *Tensor) Add(o *Tensor) *Tensor        { return t.binary(C.CT_ADD, "add", o) }
func (t *Tensor) Sub(o *Tensor) *Tensor        { return t.binary(C.CT_SUB, "sub", o) }
func (t *Tensor) Mul(o *Tensor) *Tensor        { return t.binary(C.CT_MUL, "mul", o) }
func (t *Tensor) Div(o *Tensor) *Tensor        { return t.binary(C.CT_DIV, "div", o) }
func (t *Tensor) Pow(o *Tensor) *Tensor        { return t.binary(C.CT_POW, "pow", o) }
func (t *Tensor) Maximum(o *Tensor) *Tensor    { return t.binary(C.CT_MAXIMUM, "maximum", o) }
func (t *Tensor) Minimum(o *Tensor) *Tensor    { return t.binary(C.CT_MINIMUM, "minimum", o) }
func (t *Tensor) Eq(o *Tensor) *Tensor         { return t.binary(C.CT_EQ, "eq", o) }
func (t *Tensor) Ne(o *Tensor) *Tensor         { return t.binary(C.CT_NE, "ne", o) }
func (t *Tensor) Lt(o *Tensor) *Tensor         { return t.binary(C.CT_LT, "lt", o) }
func (t *Tensor) Le(o *Tensor) *Tensor         { return t.binary(C.CT_LE, "le", o) }
func (t *Tensor) Gt(o *Tensor) *Tensor         { return t.binary(C.CT_GT, "gt", o) }
func (t *Tensor) Ge(o *Tensor) *Tensor         { return t.binary(C.CT_GE, "ge", o) }
func (t *Tensor) LogicalAnd(o *Tensor) *Tensor { return t.binary(C.CT_LOGICAL_AND, "logical_and", o) }
func (t *Tensor) LogicalOr(o *Tensor) *Tensor  { return t.binary(C.CT_LOGICAL_OR, "logical_or", o) }

// MatMul is libtorch's matmul (batched and broadcasting).
func (t *Tensor) MatMul(o *Tensor) *Tensor { return t.binary(C.CT_MATMUL, "matmul", o) }

// BMM multiplies two batches of matrices [B,n,m]·[B,m,p].
func (t *Tensor) BMM(o *Tensor) *Tensor { return t.binary(C.CT_BMM, "bmm", o) }

func (t *Tensor) scalar(op C.int, name string, s float64, reversed bool) *Tensor {
	if err := t.check(); err != nil {
		return errTensor(err)
	}
	var h C.ct_tensor
	r := C.int(0)
	if reversed {
		r = 1
	}
	return result(name, C.ct_binary_scalar(op, t.h, C.double(s), r, &h), h, t)
}

func (t *Tensor) AddScalar(s float64) *Tensor { return t.scalar(C.CT_ADD, "add", s, false) }
func (t *Tensor) SubScalar(s float64) *Tensor { return t.scalar(C.CT_SUB, "sub", s, false) }
func (t *Tensor) MulScalar(s float64) *Tensor { return t.scalar(C.CT_MUL, "mul", s, false) }
func (t *Tensor) DivScalar(s float64) *Tensor { return t.scalar(C.CT_DIV, "div", s, false) }
func (t *Tensor) PowScalar(s float64) *Tensor { return t.scalar(C.CT_POW, "pow", s, false) }
func (t *Tensor) EqScalar(s float64) *Tensor  { return t.scalar(C.CT_EQ, "eq", s, false) }
func (t *Tensor) NeScalar(s float64) *Tensor  { return t.scalar(C.CT_NE, "ne", s, false) }
func (t *Tensor) LtScalar(s float64) *Tensor  { return t.scalar(C.CT_LT, "lt", s, false) }
func (t *Tensor) LeScalar(s float64) *Tensor  { return t.scalar(C.CT_LE, "le", s, false) }
func (t *Tensor) GtScalar(s float64) *Tensor  { return t.scalar(C.CT_GT, "gt", s, false) }
func (t *Tensor) GeScalar(s float64) *Tensor  { return t.scalar(C.CT_GE, "ge", s, false) }

// RSubScalar is s - t.
func (t *Tensor) RSubScalar(s float64) *Tensor { return t.scalar(C.CT_SUB, "rsub", s, true) }

// RDivScalar is s / t.
func (t *Tensor) RDivScalar(s float64) *Tensor { return t.scalar(C.CT_DIV, "rdiv", s, true) }

func (t *Tensor) shapeOp(name string, call func(h *C.ct_tensor) C.ct_error) *Tensor {
	if err := t.check(); err != nil {
		return errTensor(err)
	}
	var h C.ct_tensor
	return result(name, call(&h), h, t)
}

// Reshape returns t with a new shape (a view when possible; -1 infers one size).
func (t *Tensor) Reshape(shape ...int64) *Tensor {
	return t.shapeOp("reshape", func(h *C.ct_tensor) C.ct_error {
		p, n := cInts(shape)
		return C.ct_reshape(t.h, p, n, 0, h)
	})
}

// View is Reshape that fails instead of copying.
func (t *Tensor) View(shape ...int64) *Tensor {
	return t.shapeOp("view", func(h *C.ct_tensor) C.ct_error {
		p, n := cInts(shape)
		return C.ct_reshape(t.h, p, n, 1, h)
	})
}

func (t *Tensor) Permute(dims ...int64) *Tensor {
	return t.shapeOp("permute", func(h *C.ct_tensor) C.ct_error {
		p, n := cInts(dims)
		return C.ct_permute(t.h, p, n, h)
	})
}

func (t *Tensor) Transpose(d0, d1 int64) *Tensor {
	return t.shapeOp("transpose", func(h *C.ct_tensor) C.ct_error {
		return C.ct_transpose(t.h, C.int64_t(d0), C.int64_t(d1), h)
	})
}

// Expand broadcasts size-1 dims to shape without copying (-1 keeps a size).
func (t *Tensor) Expand(shape ...int64) *Tensor {
	return t.shapeOp("expand", func(h *C.ct_tensor) C.ct_error {
		p, n := cInts(shape)
		return C.ct_expand(t.h, p, n, h)
	})
}

// Repeat tiles t reps times along each dim (copies).
func (t *Tensor) Repeat(reps ...int64) *Tensor {
	return t.shapeOp("repeat", func(h *C.ct_tensor) C.ct_error {
		p, n := cInts(reps)
		return C.ct_repeat(t.h, p, n, h)
	})
}

func (t *Tensor) Unsqueeze(dim int64) *Tensor {
	return t.shapeOp("unsqueeze", func(h *C.ct_tensor) C.ct_error { return C.ct_unsqueeze(t.h, C.int64_t(dim), h) })
}

func (t *Tensor) Squeeze(dim int64) *Tensor {
	return t.shapeOp("squeeze", func(h *C.ct_tensor) C.ct_error { return C.ct_squeeze(t.h, C.int64_t(dim), h) })
}

func (t *Tensor) Flip(dims ...int64) *Tensor {
	return t.shapeOp("flip", func(h *C.ct_tensor) C.ct_error {
		p, n := cInts(dims)
		return C.ct_flip(t.h, p, n, h)
	})
}

// Narrow is the view t[..., start:start+length, ...] along dim.
func (t *Tensor) Narrow(dim, start, length int64) *Tensor {
	return t.shapeOp("narrow", func(h *C.ct_tensor) C.ct_error {
		return C.ct_narrow(t.h, C.int64_t(dim), C.int64_t(start), C.int64_t(length), h)
	})
}

// Select is t[..., i, ...] along dim, with dim removed.
func (t *Tensor) Select(dim, i int64) *Tensor { return t.Narrow(dim, i, 1).Squeeze(dim) }

func handles(ts []*Tensor) ([]C.ct_tensor, error) {
	hs := make([]C.ct_tensor, len(ts))
	for i, t := range ts {
		if err := t.check(); err != nil {
			return nil, err
		}
		hs[i] = t.h
	}
	return hs, nil
}

func list(name string, ts []*Tensor, call func(p *C.ct_tensor, n C.int, h *C.ct_tensor) C.ct_error) *Tensor {
	hs, err := handles(ts)
	if err != nil {
		return errTensor(err)
	}
	var p *C.ct_tensor
	if len(hs) > 0 {
		p = &hs[0]
	}
	var h C.ct_tensor
	return result(name, call(p, C.int(len(hs)), &h), h, ts...)
}

// Cat joins tensors along dim.
func Cat(ts []*Tensor, dim int64) *Tensor {
	return list("cat", ts, func(p *C.ct_tensor, n C.int, h *C.ct_tensor) C.ct_error { return C.ct_cat(p, n, C.int64_t(dim), h) })
}

// Stack joins tensors along a new dim.
func Stack(ts []*Tensor, dim int64) *Tensor {
	return list("stack", ts, func(p *C.ct_tensor, n C.int, h *C.ct_tensor) C.ct_error { return C.ct_stack(p, n, C.int64_t(dim), h) })
}

func (t *Tensor) pieces(name string, count int64, call func(outs *C.ct_tensor, cap C.int, n *C.int) C.ct_error) ([]*Tensor, error) {
	if err := t.check(); err != nil {
		return nil, err
	}
	if count < 1 {
		count = 1
	}
	outs := make([]C.ct_tensor, count)
	var n C.int
	if err := takeError(name, call(&outs[0], C.int(count), &n)); err != nil {
		return nil, err
	}
	res := make([]*Tensor, int(n))
	for i := range res {
		res[i] = newTensor(outs[i], t.scope)
	}
	return res, nil
}

// Split cuts t into pieces of size along dim (the last may be smaller).
func (t *Tensor) Split(size, dim int64) ([]*Tensor, error) {
	d := t.Size(int(dim))
	count := int64(1)
	if size > 0 {
		count = (d + size - 1) / size
	}
	return t.pieces("split", count, func(outs *C.ct_tensor, c C.int, n *C.int) C.ct_error {
		return C.ct_split(t.h, C.int64_t(size), C.int64_t(dim), outs, c, n)
	})
}

// Chunk cuts t into at most chunks pieces along dim.
func (t *Tensor) Chunk(chunks, dim int64) ([]*Tensor, error) {
	return t.pieces("chunk", chunks, func(outs *C.ct_tensor, c C.int, n *C.int) C.ct_error {
		return C.ct_chunk(t.h, C.int64_t(chunks), C.int64_t(dim), outs, c, n)
	})
}

func (t *Tensor) IndexSelect(dim int64, index *Tensor) *Tensor {
	if err := firstErr(t, index); err != nil {
		return errTensor(err)
	}
	var h C.ct_tensor
	return result("index_select", C.ct_index_select(t.h, C.int64_t(dim), index.h, &h), h, t, index)
}

func (t *Tensor) Gather(dim int64, index *Tensor) *Tensor {
	if err := firstErr(t, index); err != nil {
		return errTensor(err)
	}
	var h C.ct_tensor
	return result("gather", C.ct_gather(t.h, C.int64_t(dim), index.h, &h), h, t, index)
}

// Scatter returns a copy of t with src written at index along dim.
func (t *Tensor) Scatter(dim int64, index, src *Tensor) *Tensor {
	if err := firstErr(t, index, src); err != nil {
		return errTensor(err)
	}
	var h C.ct_tensor
	return result("scatter", C.ct_scatter(t.h, C.int64_t(dim), index.h, src.h, &h), h, t, index, src)
}

// MaskedFill returns a copy of t with v wherever mask is true.
func (t *Tensor) MaskedFill(mask *Tensor, v float64) *Tensor {
	if err := firstErr(t, mask); err != nil {
		return errTensor(err)
	}
	var h C.ct_tensor
	return result("masked_fill", C.ct_masked_fill(t.h, mask.h, C.double(v), &h), h, t, mask)
}

// Where picks a where cond is true, else b.
func Where(cond, a, b *Tensor) *Tensor {
	if err := firstErr(cond, a, b); err != nil {
		return errTensor(err)
	}
	var h C.ct_tensor
	return result("where", C.ct_where(cond.h, a.h, b.h, &h), h, cond, a, b)
}

// Clamp limits t to [lo, hi].
func (t *Tensor) Clamp(lo, hi float64) *Tensor { return t.clamp(lo, hi, true, true) }

// ClampMin limits t to [lo, ∞).
func (t *Tensor) ClampMin(lo float64) *Tensor { return t.clamp(lo, 0, true, false) }

// ClampMax limits t to (-∞, hi].
func (t *Tensor) ClampMax(hi float64) *Tensor { return t.clamp(0, hi, false, true) }

func (t *Tensor) clamp(lo, hi float64, hasLo, hasHi bool) *Tensor {
	return t.shapeOp("clamp", func(h *C.ct_tensor) C.ct_error {
		return C.ct_clamp(t.h, C.double(lo), C.double(hi), cBool(hasLo), cBool(hasHi), h)
	})
}

func (t *Tensor) Cumsum(dim int64) *Tensor {
	return t.shapeOp("cumsum", func(h *C.ct_tensor) C.ct_error { return C.ct_cumsum(t.h, C.int64_t(dim), h) })
}

func cBool(b bool) C.int {
	if b {
		return 1
	}
	return 0
}

func (t *Tensor) reduce(op C.int, name string, dims []int64, keep bool) *Tensor {
	return t.shapeOp(name, func(h *C.ct_tensor) C.ct_error {
		p, n := cInts(dims)
		return C.ct_reduce(op, t.h, p, n, cBool(keep), h)
	})
}

// Sum over dims (all dims when none are given).
func (t *Tensor) Sum(keepdim bool, dims ...int64) *Tensor {
	return t.reduce(C.CT_SUM, "sum", dims, keepdim)
}

// Mean over dims (all dims when none are given).
func (t *Tensor) Mean(keepdim bool, dims ...int64) *Tensor {
	return t.reduce(C.CT_MEAN, "mean", dims, keepdim)
}

// Amax is the maximum over dims.
func (t *Tensor) Amax(keepdim bool, dims ...int64) *Tensor {
	return t.reduce(C.CT_AMAX, "amax", dims, keepdim)
}

// Amin is the minimum over dims.
func (t *Tensor) Amin(keepdim bool, dims ...int64) *Tensor {
	return t.reduce(C.CT_AMIN, "amin", dims, keepdim)
}

func (t *Tensor) pair(name string, call func(a, b *C.ct_tensor) C.ct_error) (*Tensor, *Tensor) {
	if err := t.check(); err != nil {
		return errTensor(err), errTensor(err)
	}
	var a, b C.ct_tensor
	e := call(&a, &b)
	if err := takeError(name, e); err != nil {
		if t.scope != nil {
			t.scope.noteErr(err)
		}
		return errTensor(err), errTensor(err)
	}
	return newTensor(a, t.scope), newTensor(b, t.scope)
}

// Max returns the maximum values and their indices along dim.
func (t *Tensor) Max(dim int64, keepdim bool) (values, indices *Tensor) {
	return t.pair("max", func(a, b *C.ct_tensor) C.ct_error { return C.ct_max_dim(t.h, C.int64_t(dim), cBool(keepdim), 0, a, b) })
}

// Min returns the minimum values and their indices along dim.
func (t *Tensor) Min(dim int64, keepdim bool) (values, indices *Tensor) {
	return t.pair("min", func(a, b *C.ct_tensor) C.ct_error { return C.ct_max_dim(t.h, C.int64_t(dim), cBool(keepdim), 1, a, b) })
}

func (t *Tensor) Argmax(dim int64, keepdim bool) *Tensor {
	return t.shapeOp("argmax", func(h *C.ct_tensor) C.ct_error { return C.ct_argmax(t.h, C.int64_t(dim), cBool(keepdim), h) })
}

// TopK returns the k largest (or smallest) values along dim, sorted, and their indices.
func (t *Tensor) TopK(k, dim int64, largest bool) (values, indices *Tensor) {
	return t.pair("topk", func(a, b *C.ct_tensor) C.ct_error {
		return C.ct_topk(t.h, C.int64_t(k), C.int64_t(dim), cBool(largest), a, b)
	})
}

// Sort sorts along dim (stable: equal values keep their order) and returns the permutation.
func (t *Tensor) Sort(dim int64, descending bool) (values, indices *Tensor) {
	return t.pair("sort", func(a, b *C.ct_tensor) C.ct_error { return C.ct_sort(t.h, C.int64_t(dim), cBool(descending), a, b) })
}

func (t *Tensor) Softmax(dim int64) *Tensor {
	return t.shapeOp("softmax", func(h *C.ct_tensor) C.ct_error { return C.ct_softmax(t.h, C.int64_t(dim), 0, h) })
}

func (t *Tensor) LogSoftmax(dim int64) *Tensor {
	return t.shapeOp("log_softmax", func(h *C.ct_tensor) C.ct_error { return C.ct_softmax(t.h, C.int64_t(dim), 1, h) })
}
