package checkpoint

import (
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
)

// TensorRecord says exactly where one tensor's bytes live in a file, so a loader can map
// the file and build the tensor over those bytes without copying them through Go.
//
// Element [i0, i1, ...] of the tensor is at byte
//
//	Offset + (i0*Strides[0] + i1*Strides[1] + ...) * DType.Size()
//
// of Path, little-endian, with Strides taken as RowMajorStrides(Shape) when nil. Torch
// storages start 64-byte aligned (torch and WriteTorchZip align them); safetensors data
// is aligned to the element size only if the writer ordered it so (WriteSafetensors
// does). All bytes a record can touch lie inside
// [StorageOffset, StorageOffset+StorageBytes), which the reader has checked against the
// file, so a loader may map that span once and build every view sharing StorageKey on it.
type TensorRecord struct {
	Name  string
	DType DType
	Shape []int64 // empty for a scalar

	// Strides are in elements, one per dimension. nil means row-major contiguous
	// (safetensors always); torch records carry the strides torch pickled, which may be
	// standard (see Contiguous) or describe a view such as a transpose.
	Strides []int64

	Path   string // absolute path of the file holding the bytes
	Offset int64  // absolute byte offset in Path of element [0, ..., 0]

	// StorageKey is equal for records that view the same storage: torch saves tied
	// weights (BLIP's shared encoder/decoder tensors, the LM head) as one storage
	// referenced under several names. A safetensors tensor owns its bytes, so its key is
	// unique to it. The key is opaque; compare it, do not parse it.
	StorageKey    string
	StorageOffset int64 // absolute byte offset in Path where the storage starts
	StorageBytes  int64 // length of the storage in bytes
}

// RowMajorStrides are the strides, in elements, of a contiguous tensor of this shape.
func RowMajorStrides(shape []int64) []int64 {
	strides := make([]int64, len(shape))
	acc := int64(1)
	for i := len(shape) - 1; i >= 0; i-- {
		strides[i] = acc
		acc *= max(shape[i], 1)
	}
	return strides
}

// NumElements is the number of elements (1 for a scalar, 0 if any dimension is 0).
func (r TensorRecord) NumElements() int64 {
	n := int64(1)
	for _, s := range r.Shape {
		n *= s
	}
	return n
}

// NumBytes is the size of the tensor's elements packed row-major.
func (r TensorRecord) NumBytes() int64 { return r.NumElements() * int64(r.DType.Size()) }

// EffectiveStrides are Strides, or the row-major strides when Strides is nil.
func (r TensorRecord) EffectiveStrides() []int64 {
	if r.Strides == nil {
		return RowMajorStrides(r.Shape)
	}
	return r.Strides
}

// Contiguous reports whether the NumBytes bytes at Offset are the tensor in row-major
// order, by torch's rule: strides of dimensions of size 1 do not matter, and an empty
// tensor is contiguous.
func (r TensorRecord) Contiguous() bool {
	if r.Strides == nil || r.NumElements() == 0 {
		return true
	}
	want := int64(1)
	for i := len(r.Shape) - 1; i >= 0; i-- {
		if r.Shape[i] != 1 && r.Strides[i] != want {
			return false
		}
		want *= r.Shape[i]
	}
	return true
}

// Span is the byte range [start, end) of Path the tensor's elements occupy; for a view it
// may include bytes of the storage that are not part of the tensor.
func (r TensorRecord) Span() (start, end int64) {
	if r.NumElements() == 0 {
		return r.Offset, r.Offset
	}
	last := int64(0)
	for i, s := range r.EffectiveStrides() {
		last += (r.Shape[i] - 1) * s
	}
	return r.Offset, r.Offset + (last+1)*int64(r.DType.Size())
}

// viewExtent validates shape and strides and returns the number of elements and the
// number of storage elements the view needs after its offset (0 when empty). It guards
// every product against overflow because the numbers come from untrusted files.
func viewExtent(shape, strides []int64) (numel, extent int64, err error) {
	if strides != nil && len(strides) != len(shape) {
		return 0, 0, fmt.Errorf("%d strides for %d dimensions", len(strides), len(shape))
	}
	numel = 1
	for _, s := range shape {
		if s < 0 {
			return 0, 0, fmt.Errorf("negative dimension in shape %v", shape)
		}
		if s != 0 && numel > math.MaxInt64/8/s {
			return 0, 0, fmt.Errorf("shape %v is too large", shape)
		}
		numel *= s
	}
	if numel == 0 {
		return 0, 0, nil
	}
	if strides == nil {
		return numel, numel, nil
	}
	last := int64(0)
	for i, st := range strides {
		if st < 0 {
			return 0, 0, fmt.Errorf("negative stride in %v", strides)
		}
		d := shape[i] - 1
		if st != 0 && d > (math.MaxInt64/8-last)/st {
			return 0, 0, fmt.Errorf("strides %v for shape %v are too large", strides, shape)
		}
		last += d * st
	}
	return numel, last + 1, nil
}

// maxReadData bounds the copy ReadData makes.
const maxReadData = 16 << 30

// maxGatherWaste bounds how many unused bytes ReadData reads in one piece for a view
// before it falls back to reading row by row.
const maxGatherWaste = 64 << 20

// ReadData returns a copy of the tensor's elements, row-major and little-endian, read
// from ra (the opened Path). It is for small tensors, conversions and tests; the model
// loader maps the file instead.
func (r TensorRecord) ReadData(ra io.ReaderAt) ([]byte, error) {
	if _, _, err := viewExtent(r.Shape, r.Strides); err != nil {
		return nil, fmt.Errorf("tensor %q: %w", r.Name, err)
	}
	esz := int64(r.DType.Size())
	if esz == 0 {
		return nil, fmt.Errorf("tensor %q: invalid dtype", r.Name)
	}
	if r.NumBytes() > maxReadData {
		return nil, fmt.Errorf("tensor %q: %d bytes is too large to copy; map the file instead", r.Name, r.NumBytes())
	}
	if r.NumBytes() == 0 {
		return []byte{}, nil
	}
	start, end := r.Span()
	var last [1]byte // the file must hold the whole span before anything is allocated for it
	if err := readFull(ra, last[:], end-1); err != nil {
		return nil, fmt.Errorf("tensor %q: %w", r.Name, err)
	}
	out := make([]byte, r.NumBytes())
	if r.Contiguous() {
		if err := readFull(ra, out, r.Offset); err != nil {
			return nil, fmt.Errorf("tensor %q: %w", r.Name, err)
		}
		return out, nil
	}
	strides := r.EffectiveStrides()
	if end-start-int64(len(out)) <= maxGatherWaste {
		span := make([]byte, end-start)
		if err := readFull(ra, span, start); err != nil {
			return nil, fmt.Errorf("tensor %q: %w", r.Name, err)
		}
		gather(out, r.Shape, strides, esz, func(dst []byte, elem int64) error {
			copy(dst, span[elem*esz:])
			return nil
		})
		return out, nil
	}
	err := gather(out, r.Shape, strides, esz, func(dst []byte, elem int64) error {
		return readFull(ra, dst, start+elem*esz)
	})
	if err != nil {
		return nil, fmt.Errorf("tensor %q: %w", r.Name, err)
	}
	return out, nil
}

// gather walks the elements in row-major order, handing fetch each destination slot and
// the element's index in the storage (relative to the view's offset).
func gather(out []byte, shape, strides []int64, esz int64, fetch func(dst []byte, elem int64) error) error {
	idx := make([]int64, len(shape))
	for pos := int64(0); pos < int64(len(out)); pos += esz {
		elem := int64(0)
		for i, v := range idx {
			elem += v * strides[i]
		}
		if err := fetch(out[pos:pos+esz], elem); err != nil {
			return err
		}
		for i := len(idx) - 1; i >= 0; i-- {
			idx[i]++
			if idx[i] < shape[i] {
				break
			}
			idx[i] = 0
		}
	}
	return nil
}

func readFull(ra io.ReaderAt, p []byte, off int64) error {
	n, err := ra.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("read %d bytes at offset %d: %w", len(p), off, err)
}

func cloneShape(s []int64) []int64 {
	if s == nil {
		return []int64{}
	}
	return slices.Clone(s)
}
