// Package torch is capfilt's Go binding over libtorch: tensors, ops, autograd, AdamW,
// devices and dtypes. It links only libcapfilt_torch.so, a small C ABI
// (csrc/capfilt_torch.h) over libtorch's stable C++ API, built by
// scripts/build-torch-shim.sh for whichever libtorch the machine has.
//
// Errors are sticky: an op that fails returns a tensor holding the error, and every op
// on such a tensor returns it again without calling libtorch, so a chain of ops is
// checked once, at its end, with Err. No op panics.
//
// Memory is freed deterministically: by Free, or by the Scope a tensor belongs to (see
// scope.go). A garbage-collector cleanup frees unscoped tensors that were forgotten, but
// it is only a safety net: the collector does not see libtorch's memory.
package torch

/*
#cgo CFLAGS: -I${SRCDIR}/csrc
#cgo LDFLAGS: -L${SRCDIR}/../build -lcapfilt_torch -Wl,-rpath,${SRCDIR}/../build -Wl,-rpath,$ORIGIN -Wl,-rpath,$ORIGIN/../build
#include <stdlib.h>
#include "capfilt_torch.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"unsafe"
)

// ErrOutOfMemory is matched (errors.Is) by every error caused by the device, or the
// host, running out of memory. A caller can react by splitting its batch.
var ErrOutOfMemory = errors.New("out of memory")

// ErrFreed is returned when a tensor is used after Free or after its scope closed.
var ErrFreed = errors.New("tensor used after it was freed")

// Error is a failure reported by libtorch or by the shim, with the op that failed.
type Error struct {
	Op  string
	Msg string
	OOM bool
}

func (e *Error) Error() string { return "torch: " + e.Op + ": " + e.Msg }

// Is makes errors.Is(err, ErrOutOfMemory) true for out-of-memory failures.
func (e *Error) Is(target error) bool { return target == ErrOutOfMemory && e.OOM }

// takeError converts a ct_error into a Go error and frees it.
func takeError(op string, e C.ct_error) error {
	if e == nil {
		return nil
	}
	err := &Error{Op: op, Msg: C.GoString(e.msg), OOM: e.code == C.CT_ERR_OOM}
	C.ct_error_free(e)
	return err
}

// Tensor is a handle on one libtorch tensor.
type Tensor struct {
	h       C.ct_tensor
	err     error
	scope   *Scope
	cleanup runtime.Cleanup
	managed bool                    // a GC cleanup is registered
	shape   atomic.Pointer[[]int64] // sizes, read once: model weights are shared by goroutines
}

// Err returns the error that produced this tensor, if any.
func (t *Tensor) Err() error {
	if t == nil {
		return errors.New("torch: nil tensor")
	}
	return t.err
}

// errTensor is the result of an op whose inputs or call failed.
func errTensor(err error) *Tensor { return &Tensor{err: err} }

// Failed returns a tensor holding err; ops on it return err again.
func Failed(err error) *Tensor { return errTensor(err) }

func freeHandle(h C.ct_tensor) { C.ct_free(h) }

// newTensor wraps a fresh handle. It joins scope s when s is open; otherwise it is
// unscoped and a GC cleanup is its safety net.
func newTensor(h C.ct_tensor, s *Scope) *Tensor {
	t := &Tensor{h: h}
	if s == nil || !s.add(t) {
		t.manage()
	}
	return t
}

func (t *Tensor) manage() {
	t.scope = nil
	if !t.managed {
		t.cleanup = runtime.AddCleanup(t, freeHandle, t.h)
		t.managed = true
	}
}

func (t *Tensor) unmanage() {
	if t.managed {
		t.cleanup.Stop()
		t.managed = false
	}
}

// Free releases the tensor now. Using it afterwards gives ErrFreed; freeing twice is a no-op.
func (t *Tensor) Free() {
	if t == nil || t.h == nil {
		return
	}
	if t.scope != nil {
		t.scope.remove(t)
	}
	t.unmanage()
	C.ct_free(t.h)
	t.h = nil
	t.err = ErrFreed
}

// check returns the error that stops an op on t, or nil.
func (t *Tensor) check() error {
	switch {
	case t == nil:
		return errors.New("torch: nil tensor")
	case t.err != nil:
		return t.err
	case t.h == nil:
		return ErrFreed
	}
	return nil
}

// firstErr returns the first failure among the operands.
func firstErr(ts ...*Tensor) error {
	for _, t := range ts {
		if err := t.check(); err != nil {
			return err
		}
	}
	return nil
}

// result turns a C call's outcome into a tensor in the deepest open scope among the operands.
func result(op string, e C.ct_error, h C.ct_tensor, operands ...*Tensor) *Tensor {
	s := deepestScope(operands...)
	if err := takeError(op, e); err != nil {
		if s != nil {
			s.noteErr(err)
		}
		return errTensor(err)
	}
	return newTensor(h, s)
}

// Dim is the number of dimensions (0 for a failed tensor).
func (t *Tensor) Dim() int {
	if t.check() != nil {
		return 0
	}
	return int(C.ct_dim(t.h))
}

// Shape returns the sizes of t (nil for a failed tensor). The slice must not be modified.
func (t *Tensor) Shape() []int64 {
	if t.check() != nil {
		return nil
	}
	if p := t.shape.Load(); p != nil {
		return *p
	}
	n := int(C.ct_dim(t.h))
	shape := make([]int64, n)
	if n > 0 {
		C.ct_shape(t.h, (*C.int64_t)(unsafe.Pointer(&shape[0])))
	}
	t.shape.Store(&shape)
	return shape
}

// Size returns the size of dimension d (negative d counts from the end).
func (t *Tensor) Size(d int) int64 {
	s := t.Shape()
	if d < 0 {
		d += len(s)
	}
	if d < 0 || d >= len(s) {
		return 0
	}
	return s[d]
}

// Numel is the number of elements.
func (t *Tensor) Numel() int64 {
	if t.check() != nil {
		return 0
	}
	return int64(C.ct_numel(t.h))
}

// DType is the element type.
func (t *Tensor) DType() DType {
	if t.check() != nil {
		return Invalid
	}
	return DType(C.ct_dtype_of(t.h))
}

// Device is where the data lives.
func (t *Tensor) Device() Device {
	if t.check() != nil {
		return CPU
	}
	d := C.ct_device_of(t.h)
	if d._type == 1 {
		return CUDA(int(d.index))
	}
	return CPU
}

// RequiresGrad reports whether autograd tracks t.
func (t *Tensor) RequiresGrad() bool {
	return t.check() == nil && C.ct_requires_grad(t.h) != 0
}

func (t *Tensor) String() string {
	if err := t.check(); err != nil {
		return fmt.Sprintf("Tensor(error: %v)", err)
	}
	return fmt.Sprintf("Tensor(%v, %v, %v)", t.Shape(), t.DType(), t.Device())
}

// cShape returns a C pointer to a Go slice of int64 (valid for the duration of a call).
func cInts(v []int64) (*C.int64_t, C.int) {
	if len(v) == 0 {
		return nil, 0
	}
	return (*C.int64_t)(unsafe.Pointer(&v[0])), C.int(len(v))
}
