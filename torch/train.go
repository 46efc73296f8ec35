package torch

// #include <stdlib.h>
// #include "capfilt_torch.h"
import "C"

import (
	"fmt"
	"unsafe"
)

// What training needs beyond the forward ops: random-number state (bit-identical
// resume), in-place updates outside autograd, gradient handles.

func generatorState(op string, g *Generator, dev Device) ([]byte, error) {
	if g != nil && g.g == nil {
		return nil, &Error{Op: op, Msg: "generator used after Close"}
	}
	var p *C.uint8_t
	var n C.int64_t
	if err := takeError(op, C.ct_generator_get_state(g.handle(), cDevice(dev), &p, &n)); err != nil {
		return nil, err
	}
	defer C.free(unsafe.Pointer(p))
	return C.GoBytes(unsafe.Pointer(p), C.int(n)), nil
}

func setGeneratorState(op string, g *Generator, dev Device, state []byte) error {
	if g != nil && g.g == nil {
		return &Error{Op: op, Msg: "generator used after Close"}
	}
	if len(state) == 0 {
		return &Error{Op: op, Msg: "empty generator state"}
	}
	p := C.CBytes(state)
	defer C.free(p)
	return takeError(op, C.ct_generator_set_state(g.handle(), cDevice(dev), (*C.uint8_t)(p), C.int64_t(len(state))))
}

// State is the generator's state: SetState with it replays every later draw.
func (g *Generator) State() ([]byte, error) {
	if g == nil {
		return nil, &Error{Op: "generator state", Msg: "nil generator"}
	}
	return generatorState("generator state", g, CPU)
}

// SetState restores a state taken with State.
func (g *Generator) SetState(state []byte) error {
	if g == nil {
		return &Error{Op: "generator set_state", Msg: "nil generator"}
	}
	return setGeneratorState("generator set_state", g, CPU, state)
}

// DefaultGeneratorState is the state of libtorch's default generator of dev (dropout,
// drop path, and Randn/Multinomial given a nil generator draw from it).
func DefaultGeneratorState(dev Device) ([]byte, error) {
	return generatorState("default generator state "+dev.String(), nil, dev)
}

// SetDefaultGeneratorState restores a state taken with DefaultGeneratorState.
func SetDefaultGeneratorState(dev Device, state []byte) error {
	return setGeneratorState("default generator set_state "+dev.String(), nil, dev, state)
}

// ClampInPlace limits t to [lo, hi] in place, outside autograd (e.g. a learnable
// temperature kept in range between steps).
func (t *Tensor) ClampInPlace(lo, hi float64) error {
	if err := t.check(); err != nil {
		return err
	}
	return takeError("clamp_", C.ct_clamp_(t.h, C.double(lo), C.double(hi)))
}

// DetachedClone is a copy of t's values that autograd does not track, whatever the grad
// mode: momentum copies, snapshots of weights.
func (t *Tensor) DetachedClone() *Tensor {
	return t.shapeOp("detached_clone", func(h *C.ct_tensor) C.ct_error { return C.ct_detached_clone(t.h, h) })
}

// SetGrad replaces t's gradient with g (same shape, dtype and device; nil drops it).
// The gradient shares g's data.
func (t *Tensor) SetGrad(g *Tensor) error {
	if err := t.check(); err != nil {
		return err
	}
	if g == nil {
		return takeError("set_grad", C.ct_set_grad(t.h, nil))
	}
	if err := g.check(); err != nil {
		return err
	}
	return takeError("set_grad", C.ct_set_grad(t.h, g.h))
}

// EmbeddingPadded is Embedding whose row padIdx gets no gradient from the lookup, as
// nn.Embedding(padding_idx=padIdx) (BERT's [PAD] row); the values are Embedding's.
func EmbeddingPadded(weight, ids *Tensor, padIdx int64) *Tensor {
	return call("embedding", []*Tensor{ids, weight}, func(h *C.ct_tensor) C.ct_error {
		return C.ct_embedding_padded(weight.h, ids.h, C.int64_t(padIdx), h)
	})
}

// EMA sets dst[i] = m·dst[i] + (1−m)·src[i] in place for every pair, outside autograd:
// one call for a whole model's momentum update. Shapes and dtypes must match pairwise.
func EMA(dst, src []*Tensor, m float64) error {
	if len(dst) != len(src) {
		return &Error{Op: "ema", Msg: fmt.Sprintf("%d destinations for %d sources", len(dst), len(src))}
	}
	if len(dst) == 0 {
		return nil
	}
	d, err := handles(dst)
	if err != nil {
		return err
	}
	s, err := handles(src)
	if err != nil {
		return err
	}
	// Handle arrays passed to C hold no Go pointers themselves (ct_tensor is a C pointer).
	return takeError("ema", C.ct_ema_(&d[0], &s[0], C.int(len(d)), C.double(m)))
}

// LiveTensors is the number of tensor handles made and not yet freed, in the whole
// process: a loop that frees what it makes keeps it constant (leak checks).
func LiveTensors() int64 { return int64(C.ct_live_tensors()) }
