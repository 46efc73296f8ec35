package torch

// #include <stdlib.h>
// #include "capfilt_torch.h"
import "C"

import (
	"fmt"
	"unsafe"
)

// ParamGroup is a set of parameters sharing AdamW settings.
type ParamGroup struct {
	Params      []*Tensor
	LR          float64
	Beta1       float64
	Beta2       float64
	Eps         float64
	WeightDecay float64
}

// DefaultParamGroup has torch's AdamW defaults: betas (0.9, 0.999), eps 1e-8.
func DefaultParamGroup(params []*Tensor, lr, weightDecay float64) ParamGroup {
	return ParamGroup{Params: params, LR: lr, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: weightDecay}
}

// AdamW is libtorch's AdamW (decoupled weight decay) over parameter groups.
type AdamW struct {
	o      C.ct_optimizer
	groups int
}

// NewAdamW builds the optimiser. Parameters must require grad.
func NewAdamW(groups ...ParamGroup) (*AdamW, error) {
	cg := make([]C.ct_adamw_group, len(groups))
	// The handle arrays live in C memory: cgo forbids passing Go memory (cg) that holds
	// pointers to other Go memory.
	var allocs []unsafe.Pointer
	defer func() {
		for _, p := range allocs {
			C.free(p)
		}
	}()
	for i, g := range groups {
		hs, err := handles(g.Params)
		if err != nil {
			return nil, fmt.Errorf("adamw group %d: %w", i, err)
		}
		var p *C.ct_tensor
		if len(hs) > 0 {
			size := C.size_t(len(hs)) * C.size_t(unsafe.Sizeof(hs[0]))
			mem := C.malloc(size)
			allocs = append(allocs, mem)
			copy(unsafe.Slice((*C.ct_tensor)(mem), len(hs)), hs)
			p = (*C.ct_tensor)(mem)
		}
		cg[i] = C.ct_adamw_group{params: p, n: C.int(len(hs)), lr: C.double(g.LR), beta1: C.double(g.Beta1),
			beta2: C.double(g.Beta2), eps: C.double(g.Eps), weight_decay: C.double(g.WeightDecay)}
	}
	var gp *C.ct_adamw_group
	if len(cg) > 0 {
		gp = &cg[0]
	}
	var o C.ct_optimizer
	if err := takeError("adamw", C.ct_adamw_new(gp, C.int(len(cg)), &o)); err != nil {
		return nil, err
	}
	return &AdamW{o: o, groups: len(groups)}, nil
}

// Step applies one update from the current gradients.
func (a *AdamW) Step() error { return takeError("adamw step", C.ct_optimizer_step(a.o)) }

// ZeroGrad drops every parameter's gradient.
func (a *AdamW) ZeroGrad() error { return takeError("adamw zero_grad", C.ct_optimizer_zero_grad(a.o)) }

// SetLR changes group g's learning rate from the next step on.
func (a *AdamW) SetLR(g int, lr float64) error {
	return takeError("adamw set_lr", C.ct_optimizer_set_lr(a.o, C.int(g), C.double(lr)))
}

// Save writes the optimiser state (moments, step counts) to path.
func (a *AdamW) Save(path string) error {
	cp := C.CString(path)
	defer C.free(unsafe.Pointer(cp))
	return takeError("adamw save "+path, C.ct_optimizer_save(a.o, cp))
}

// Load reads state written by Save into an optimiser over the same parameters.
func (a *AdamW) Load(path string) error {
	cp := C.CString(path)
	defer C.free(unsafe.Pointer(cp))
	return takeError("adamw load "+path, C.ct_optimizer_load(a.o, cp))
}

// Close frees the optimiser (not the parameters).
func (a *AdamW) Close() {
	if a.o != nil {
		C.ct_optimizer_free(a.o)
		a.o = nil
	}
}
