package torch

// #include "capfilt_torch.h"
import "C"

import "fmt"

// orNil returns t's handle, or NULL for a nil tensor (an absent optional argument).
func orNil(t *Tensor) C.ct_tensor {
	if t == nil {
		return nil
	}
	return t.h
}

// present filters out nil optional operands before error checks.
func present(ts ...*Tensor) []*Tensor {
	out := ts[:0:0]
	for _, t := range ts {
		if t != nil {
			out = append(out, t)
		}
	}
	return out
}

func call(name string, operands []*Tensor, fn func(h *C.ct_tensor) C.ct_error) *Tensor {
	if err := firstErr(operands...); err != nil {
		return errTensor(err)
	}
	var h C.ct_tensor
	return result(name, fn(&h), h, operands...)
}

// Linear is x·wᵀ + b (b may be nil), w being [out, in] as in every checkpoint.
func (t *Tensor) Linear(w, b *Tensor) *Tensor {
	return call("linear", present(t, w, b), func(h *C.ct_tensor) C.ct_error {
		return C.ct_linear(t.h, w.h, orNil(b), h)
	})
}

// Conv2d with square stride and padding; b may be nil.
func (t *Tensor) Conv2d(w, b *Tensor, stride, padding int64) *Tensor {
	return call("conv2d", present(t, w, b), func(h *C.ct_tensor) C.ct_error {
		return C.ct_conv2d(t.h, w.h, orNil(b), C.int64_t(stride), C.int64_t(stride), C.int64_t(padding), C.int64_t(padding), h)
	})
}

// Embedding looks ids (int64, any shape) up in the rows of weight.
func Embedding(weight, ids *Tensor) *Tensor {
	return call("embedding", []*Tensor{ids, weight}, func(h *C.ct_tensor) C.ct_error {
		return C.ct_embedding(weight.h, ids.h, h)
	})
}

// LayerNorm normalises over the last dim with weight and bias (either may be nil).
func (t *Tensor) LayerNorm(w, b *Tensor, eps float64) *Tensor {
	return call("layer_norm", present(t, w, b), func(h *C.ct_tensor) C.ct_error {
		return C.ct_layer_norm(t.h, orNil(w), orNil(b), 1, C.double(eps), h)
	})
}

// Normalize divides by the L2 norm along dim, clamped below by eps (F.normalize).
func (t *Tensor) Normalize(dim int64, eps float64) *Tensor {
	return t.shapeOp("normalize", func(h *C.ct_tensor) C.ct_error {
		return C.ct_normalize(t.h, 2, C.int64_t(dim), C.double(eps), h)
	})
}

// Dropout zeroes elements with probability p and scales the rest by 1/(1-p) when train
// is true; otherwise it returns t's values unchanged.
func (t *Tensor) Dropout(p float64, train bool) *Tensor {
	return t.shapeOp("dropout", func(h *C.ct_tensor) C.ct_error { return C.ct_dropout(t.h, C.double(p), cBool(train), h) })
}

// Multinomial draws n indices per row of probs (rows need not sum to 1).
func (t *Tensor) Multinomial(n int64, replacement bool, g *Generator) *Tensor {
	return t.shapeOp("multinomial", func(h *C.ct_tensor) C.ct_error {
		return C.ct_multinomial(t.h, C.int64_t(n), cBool(replacement), g.handle(), h)
	})
}

// Reduction says how a loss combines its per-element values.
type Reduction int

const (
	ReduceNone Reduction = iota
	ReduceMean
	ReduceSum
)

// CrossEntropy of logits [N,C] (or [N,C,...]) against class indices; targets equal to
// ignoreIndex count for nothing, and the mean is over the others. labelSmoothing ε mixes
// the one-hot target with the uniform distribution: (1-ε)·NLL + ε·mean(-log p).
func CrossEntropy(logits, target *Tensor, ignoreIndex int64, labelSmoothing float64, red Reduction) *Tensor {
	return call("cross_entropy", []*Tensor{logits, target}, func(h *C.ct_tensor) C.ct_error {
		return C.ct_cross_entropy(logits.h, target.h, C.int64_t(ignoreIndex), C.double(labelSmoothing), C.int(red), h)
	})
}

// SoftCrossEntropy is the mean over rows of -Σ target·log_softmax(logits) along dim -1,
// for soft targets such as ITC's momentum-distilled ones.
func SoftCrossEntropy(logits, target *Tensor) *Tensor {
	return logits.LogSoftmax(-1).Mul(target).Sum(false, -1).Neg().Mean(false)
}

// AttentionImpl picks the kernel Attention runs.
type AttentionImpl int

const (
	// AttentionBest uses libtorch's fused scaled_dot_product_attention where the linked
	// libtorch has it (≥ 2.0), else the explicit form.
	AttentionBest AttentionImpl = iota
	// AttentionExplicit is softmax(q·kᵀ/√d + mask)·v written out, on every libtorch.
	AttentionExplicit
)

// FusedAttentionAvailable reports whether the linked libtorch has the fused kernel.
func FusedAttentionAvailable() bool { return C.ct_fused_attention_available() != 0 }

// Attention is softmax(q·kᵀ/√d + mask)·v over the last two dims of [..., L, d] inputs.
// mask may be nil, an additive float mask or a bool mask (true = attend), broadcast to
// [..., Lq, Lk]; causal masks out keys after each query. Dropout applies to the weights.
func Attention(q, k, v, mask *Tensor, causal bool, dropout float64, impl AttentionImpl) *Tensor {
	return call("attention", present(q, k, v, mask), func(h *C.ct_tensor) C.ct_error {
		return C.ct_attention(q.h, k.h, v.h, orNil(mask), cBool(causal), C.double(dropout), C.int(impl), h)
	})
}

// CopyFrom overwrites t's values with src's (broadcast), outside autograd.
func (t *Tensor) CopyFrom(src *Tensor) error {
	if err := firstErr(t, src); err != nil {
		return err
	}
	return takeError("copy_", C.ct_copy_(t.h, src.h))
}

// Fill sets every element of t to v, outside autograd.
func (t *Tensor) Fill(v float64) error {
	if err := t.check(); err != nil {
		return err
	}
	return takeError("fill_", C.ct_fill_(t.h, C.double(v)))
}

// ScaleAdd sets t = a·t + b·src in place, outside autograd (momentum-model updates).
func (t *Tensor) ScaleAdd(a float64, src *Tensor, b float64) error {
	if err := firstErr(t, src); err != nil {
		return err
	}
	return takeError("scale_add_", C.ct_lerp_scale_(t.h, src.h, C.double(a), C.double(b)))
}

// MustShape returns an error unless t has exactly the given shape (-1 matches any size).
func (t *Tensor) MustShape(what string, shape ...int64) error {
	if err := t.check(); err != nil {
		return err
	}
	got := t.Shape()
	ok := len(got) == len(shape)
	for i := 0; ok && i < len(shape); i++ {
		ok = shape[i] < 0 || shape[i] == got[i]
	}
	if !ok {
		return fmt.Errorf("%s: shape %v, want %v", what, got, shape)
	}
	return nil
}
