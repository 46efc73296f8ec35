package torch

// #include "capfilt_torch.h"
import "C"

import "runtime"

// SetRequiresGrad turns autograd tracking of t on or off (t must be a leaf).
func (t *Tensor) SetRequiresGrad(on bool) error {
	if err := t.check(); err != nil {
		return err
	}
	return takeError("requires_grad_", C.ct_set_requires_grad(t.h, cBool(on)))
}

// Backward computes gradients of the scalar t with respect to every leaf that requires them.
func (t *Tensor) Backward() error {
	if err := t.check(); err != nil {
		return err
	}
	return takeError("backward", C.ct_backward(t.h))
}

// Grad returns t's accumulated gradient, or nil when there is none. The result is a new
// handle, unscoped.
func (t *Tensor) Grad() (*Tensor, error) {
	if err := t.check(); err != nil {
		return nil, err
	}
	var h C.ct_tensor
	if err := takeError("grad", C.ct_grad(t.h, &h)); err != nil {
		return nil, err
	}
	if h == nil {
		return nil, nil
	}
	return newTensor(h, nil), nil
}

// ZeroGrad drops t's gradient.
func (t *Tensor) ZeroGrad() error {
	if err := t.check(); err != nil {
		return err
	}
	return takeError("zero_grad", C.ct_zero_grad(t.h))
}

// GradEnabled reports whether autograd records ops on the calling OS thread.
func GradEnabled() bool { return C.ct_grad_enabled() != 0 }

// NoGrad runs fn with autograd recording off. libtorch keeps this switch per OS thread,
// so the goroutine is locked to its thread for the call; goroutines fn starts are not
// covered.
func NoGrad(fn func()) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	prev := C.ct_grad_enabled()
	C.ct_set_grad_enabled(0)
	defer C.ct_set_grad_enabled(prev)
	fn()
}

// ClipGradNorm rescales the gradients of params so their joint L2 norm is at most maxNorm,
// and returns the norm before clipping.
func ClipGradNorm(params []*Tensor, maxNorm float64) (float64, error) {
	hs, err := handles(params)
	if err != nil {
		return 0, err
	}
	var p *C.ct_tensor
	if len(hs) > 0 {
		p = &hs[0]
	}
	var total C.double
	if err := takeError("clip_grad_norm", C.ct_clip_grad_norm(p, C.int(len(hs)), C.double(maxNorm), &total)); err != nil {
		return 0, err
	}
	return float64(total), nil
}
