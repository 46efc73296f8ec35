package torch

// #include <stdlib.h>
// #include "capfilt_torch.h"
import "C"

import (
	"fmt"
	"unsafe"
)

func cDevice(d Device) C.ct_device {
	if d.CUDA {
		return C.ct_device{_type: 1, index: C.int(d.Index)}
	}
	return C.ct_device{_type: 0, index: -1}
}

func checkShape(op string, n int, shape []int64) error {
	want := int64(1)
	for _, d := range shape {
		if d < 0 {
			return &Error{Op: op, Msg: fmt.Sprintf("negative size in shape %v", shape)}
		}
		want *= d
	}
	if want != int64(n) {
		return &Error{Op: op, Msg: fmt.Sprintf("%d values do not fill shape %v (%d)", n, shape, want)}
	}
	return nil
}

func fromData(op string, p unsafe.Pointer, n int, dt DType, shape []int64) *Tensor {
	if err := checkShape(op, n, shape); err != nil {
		return errTensor(err)
	}
	var h C.ct_tensor
	cs, nd := cInts(shape)
	var buf unsafe.Pointer
	if n > 0 {
		buf = p
	}
	e := C.ct_from_data(buf, C.int(dt), cs, nd, &h)
	return result(op, e, h)
}

// FromFloat32 copies data into a new CPU tensor of the given shape.
func FromFloat32(data []float32, shape ...int64) *Tensor {
	return fromData("from_float32", unsafe.Pointer(unsafe.SliceData(data)), len(data), Float32, shape)
}

// FromFloat64 copies data into a new CPU float64 tensor.
func FromFloat64(data []float64, shape ...int64) *Tensor {
	return fromData("from_float64", unsafe.Pointer(unsafe.SliceData(data)), len(data), Float64, shape)
}

// FromInt64 copies data into a new CPU int64 tensor.
func FromInt64(data []int64, shape ...int64) *Tensor {
	return fromData("from_int64", unsafe.Pointer(unsafe.SliceData(data)), len(data), Int64, shape)
}

// FromUint8 copies data into a new CPU uint8 tensor.
func FromUint8(data []uint8, shape ...int64) *Tensor {
	return fromData("from_uint8", unsafe.Pointer(unsafe.SliceData(data)), len(data), Uint8, shape)
}

// FromBool copies data into a new CPU bool tensor.
func FromBool(data []bool, shape ...int64) *Tensor {
	return fromData("from_bool", unsafe.Pointer(unsafe.SliceData(data)), len(data), Bool, shape)
}

// FromBits copies raw 16-bit patterns into a bfloat16 or float16 tensor.
func FromBits(bits []uint16, dt DType, shape ...int64) *Tensor {
	if dt != BFloat16 && dt != Float16 {
		return errTensor(&Error{Op: "from_bits", Msg: "dtype must be bfloat16 or float16, not " + dt.String()})
	}
	return fromData("from_bits", unsafe.Pointer(unsafe.SliceData(bits)), len(bits), dt, shape)
}

// Full makes a tensor filled with v.
func Full(v float64, dt DType, dev Device, shape ...int64) *Tensor {
	var h C.ct_tensor
	cs, nd := cInts(shape)
	return result("full", C.ct_full(cs, nd, C.double(v), C.int(dt), cDevice(dev), &h), h)
}

// Zeros makes a tensor of zeros.
func Zeros(dt DType, dev Device, shape ...int64) *Tensor { return Full(0, dt, dev, shape...) }

// Ones makes a tensor of ones.
func Ones(dt DType, dev Device, shape ...int64) *Tensor { return Full(1, dt, dev, shape...) }

// Arange makes [start, start+step, ...) below end.
func Arange(start, end, step float64, dt DType, dev Device) *Tensor {
	var h C.ct_tensor
	return result("arange", C.ct_arange(C.double(start), C.double(end), C.double(step), C.int(dt), cDevice(dev), &h), h)
}

// Generator is a seeded random-number stream (libtorch's CPU generator). Numbers are drawn
// on the CPU and moved, so a seed gives the same values on every device.
type Generator struct{ g C.ct_generator }

// NewGenerator makes a generator seeded with seed. Close it when done.
func NewGenerator(seed uint64) *Generator { return &Generator{g: C.ct_generator_new(C.uint64_t(seed))} }

// Close frees the generator.
func (g *Generator) Close() {
	if g != nil && g.g != nil {
		C.ct_generator_free(g.g)
		g.g = nil
	}
}

func (g *Generator) handle() C.ct_generator {
	if g == nil {
		return nil
	}
	return g.g
}

func random(op string, g *Generator, kind int, dt DType, dev Device, shape []int64) *Tensor {
	if g != nil && g.g == nil {
		return errTensor(&Error{Op: op, Msg: "generator used after Close"})
	}
	var h C.ct_tensor
	cs, nd := cInts(shape)
	return result(op, C.ct_random(g.handle(), C.int(kind), cs, nd, C.int(dt), cDevice(dev), &h), h)
}

// Randn draws from N(0,1); a nil generator uses libtorch's global one (see ManualSeed).
func Randn(g *Generator, dt DType, dev Device, shape ...int64) *Tensor {
	return random("randn", g, 0, dt, dev, shape)
}

// Rand draws from U[0,1).
func Rand(g *Generator, dt DType, dev Device, shape ...int64) *Tensor {
	return random("rand", g, 1, dt, dev, shape)
}

// To moves and/or converts t.
func (t *Tensor) To(dev Device, dt DType) *Tensor {
	if err := t.check(); err != nil {
		return errTensor(err)
	}
	var h C.ct_tensor
	return result("to", C.ct_to(t.h, cDevice(dev), C.int(dt), &h), h, t)
}

// ToDevice moves t, keeping its dtype.
func (t *Tensor) ToDevice(dev Device) *Tensor { return t.To(dev, t.DType()) }

// ToDType converts t, keeping its device.
func (t *Tensor) ToDType(dt DType) *Tensor { return t.To(t.Device(), dt) }

func copyOut[E any](t *Tensor, want DType, op string) ([]E, error) {
	if err := t.check(); err != nil {
		return nil, err
	}
	if got := t.DType(); got != want {
		return nil, &Error{Op: op, Msg: fmt.Sprintf("tensor is %v, not %v", got, want)}
	}
	out := make([]E, t.Numel())
	var p unsafe.Pointer
	if len(out) > 0 {
		p = unsafe.Pointer(&out[0])
	}
	var zero E
	n := int64(len(out)) * int64(unsafe.Sizeof(zero))
	if err := takeError(op, C.ct_copy_to(t.h, p, C.int64_t(n))); err != nil {
		return nil, err
	}
	return out, nil
}

// Float32s copies a float32 tensor (any device, any layout) into a new slice, row-major.
func (t *Tensor) Float32s() ([]float32, error) { return copyOut[float32](t, Float32, "float32s") }

// Float64s copies a float64 tensor into a new slice.
func (t *Tensor) Float64s() ([]float64, error) { return copyOut[float64](t, Float64, "float64s") }

// Int64s copies an int64 tensor into a new slice.
func (t *Tensor) Int64s() ([]int64, error) { return copyOut[int64](t, Int64, "int64s") }

// Uint8s copies a uint8 tensor into a new slice.
func (t *Tensor) Uint8s() ([]uint8, error) { return copyOut[uint8](t, Uint8, "uint8s") }

// Bools copies a bool tensor into a new slice.
func (t *Tensor) Bools() ([]bool, error) { return copyOut[bool](t, Bool, "bools") }

// Bits copies a bfloat16 or float16 tensor's raw 16-bit patterns.
func (t *Tensor) Bits() ([]uint16, error) {
	dt := t.DType()
	if dt != BFloat16 && dt != Float16 {
		if err := t.check(); err != nil {
			return nil, err
		}
		return nil, &Error{Op: "bits", Msg: "tensor is " + dt.String() + ", not bfloat16 or float16"}
	}
	return copyOut[uint16](t, dt, "bits")
}

// Item returns the single value of a one-element tensor of any numeric dtype as float64.
func (t *Tensor) Item() (float64, error) {
	if err := t.check(); err != nil {
		return 0, err
	}
	if n := t.Numel(); n != 1 {
		return 0, &Error{Op: "item", Msg: fmt.Sprintf("tensor has %d elements, not 1", n)}
	}
	v := t.To(CPU, Float64)
	defer v.Free()
	f, err := v.Float64s()
	if err != nil {
		return 0, err
	}
	return f[0], nil
}

// Mapping is a file mapped into memory; tensors made from it share its pages.
type Mapping struct {
	m    C.ct_mapping
	path string
}

// MapFile maps path read-only (copy-on-write) for making tensors from it.
func MapFile(path string) (*Mapping, error) {
	cp := C.CString(path)
	defer C.free(unsafe.Pointer(cp))
	var m C.ct_mapping
	if err := takeError("map "+path, C.ct_mapping_open(cp, &m)); err != nil {
		return nil, err
	}
	return &Mapping{m: m, path: path}, nil
}

// Size is the file's length in bytes.
func (m *Mapping) Size() int64 { return int64(C.ct_mapping_size(m.m)) }

// Tensor views the bytes at offset as a tensor of dt with the given shape and strides
// (in elements; nil for row-major contiguous). No data is copied; the view keeps the
// mapping alive after Close.
func (m *Mapping) Tensor(offset int64, dt DType, shape, strides []int64) *Tensor {
	if m.m == nil {
		return errTensor(&Error{Op: "mapping tensor", Msg: m.path + ": mapping already closed"})
	}
	if strides != nil && len(strides) != len(shape) {
		return errTensor(&Error{Op: "mapping tensor", Msg: fmt.Sprintf("%d strides for %d dims", len(strides), len(shape))})
	}
	var h C.ct_tensor
	cs, nd := cInts(shape)
	var cst *C.int64_t
	if strides != nil {
		cst, _ = cInts(strides)
	}
	e := C.ct_mapping_tensor(m.m, C.int64_t(offset), C.int(dt), cs, cst, nd, &h)
	return result("mapping tensor "+m.path, e, h)
}

// Close drops this handle on the mapping; the pages stay mapped while tensors view them.
func (m *Mapping) Close() {
	if m.m != nil {
		C.ct_mapping_release(m.m)
		m.m = nil
	}
}

// FromBytes copies raw little-endian elements of dt into a new CPU tensor.
func FromBytes(data []byte, dt DType, shape ...int64) *Tensor {
	size := dt.Size()
	if size == 0 || len(data)%size != 0 {
		return errTensor(&Error{Op: "from_bytes", Msg: fmt.Sprintf("%d bytes are not whole %v elements", len(data), dt)})
	}
	return fromData("from_bytes", unsafe.Pointer(unsafe.SliceData(data)), len(data)/size, dt, shape)
}
