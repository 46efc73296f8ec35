package checkpoint

import (
	"bytes"
	"io"
	"slices"
	"strings"
	"testing"
)

func TestRecordGeometry(t *testing.T) {
	tests := []struct {
		name       string
		shape      []int64
		strides    []int64
		contiguous bool
		numel      int64
		span       int64 // bytes from Offset, F32
	}{
		{"safetensors matrix", []int64{3, 4}, nil, true, 12, 48},
		{"standard strides", []int64{3, 4}, []int64{4, 1}, true, 12, 48},
		{"transpose", []int64{4, 3}, []int64{1, 4}, false, 12, 48},
		{"rows of a wider matrix", []int64{2, 3}, []int64{5, 1}, false, 6, 4 * 8},
		{"size-1 dims ignore their stride", []int64{1, 512}, []int64{7, 1}, true, 512, 2048},
		{"leading size-1 dim of an unsqueeze", []int64{3, 1, 2}, []int64{2, 99, 1}, true, 6, 24},
		{"scalar", []int64{}, []int64{}, true, 1, 4},
		{"empty", []int64{0, 4}, []int64{4, 1}, true, 0, 0},
		{"broadcast (stride 0)", []int64{3, 2}, []int64{0, 1}, false, 6, 8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := TensorRecord{DType: F32, Shape: tt.shape, Strides: tt.strides, Offset: 100}
			if r.Contiguous() != tt.contiguous || r.NumElements() != tt.numel || r.NumBytes() != 4*tt.numel {
				t.Errorf("contiguous %v numel %d bytes %d", r.Contiguous(), r.NumElements(), r.NumBytes())
			}
			if start, end := r.Span(); start != 100 || end-start != tt.span {
				t.Errorf("span [%d, %d), want [100, %d)", start, end, 100+tt.span)
			}
		})
	}
	if got := RowMajorStrides([]int64{2, 0, 3}); !slices.Equal(got, []int64{3, 3, 1}) {
		t.Errorf("RowMajorStrides = %v", got)
	}
}

// patternFile is a large, virtual file whose byte at offset o is byte(o % 251).
type patternFile struct{ size int64 }

func (p patternFile) ReadAt(b []byte, off int64) (int, error) {
	for i := range b {
		if off+int64(i) >= p.size {
			return i, io.EOF
		}
		b[i] = byte((off + int64(i)) % 251)
	}
	return len(b), nil
}

func TestReadDataGathersViewsInRowMajorOrder(t *testing.T) {
	at := func(off int64) []byte { return []byte{byte(off % 251)} }
	tests := []struct {
		name string
		rec  TensorRecord
		want []byte
	}{
		{"contiguous", TensorRecord{DType: U8, Shape: []int64{2, 2}, Offset: 10},
			slices.Concat(at(10), at(11), at(12), at(13))},
		{"transpose", TensorRecord{DType: U8, Shape: []int64{2, 3}, Strides: []int64{1, 2}, Offset: 10},
			slices.Concat(at(10), at(12), at(14), at(11), at(13), at(15))},
		{"two bytes an element", TensorRecord{DType: I16, Shape: []int64{2}, Strides: []int64{3}, Offset: 4},
			slices.Concat(at(4), at(5), at(10), at(11))},
		// A view whose span is far larger than its elements is read element by element
		// rather than by reading the whole span.
		{"sparse view", TensorRecord{DType: U8, Shape: []int64{3}, Strides: []int64{1 << 30}, Offset: 1},
			slices.Concat(at(1), at(1+1<<30), at(1+2<<30))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.rec.ReadData(patternFile{size: 4 << 30})
			if err != nil || !bytes.Equal(got, tt.want) {
				t.Errorf("ReadData = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
	short := TensorRecord{Name: "w", DType: F32, Shape: []int64{4}, Offset: 8}
	if _, err := short.ReadData(patternFile{size: 20}); err == nil {
		t.Error("reading past the end of the file should fail")
	}
}

func TestReadDataRefusesCopiesItCannotMake(t *testing.T) {
	tests := []struct {
		name string
		rec  TensorRecord
		want string
	}{
		// A broadcast view of 4 bytes that would expand to 4 TiB.
		{"huge broadcast", TensorRecord{Name: "w", DType: F32, Shape: []int64{1 << 40}, Strides: []int64{0}}, "too large to copy"},
		{"span past the end of the file", TensorRecord{Name: "w", DType: U8, Shape: []int64{2}, Strides: []int64{1 << 20}}, "unexpected EOF"},
	}
	for _, tt := range tests {
		if _, err := tt.rec.ReadData(patternFile{size: 1 << 10}); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want %q", tt.name, err, tt.want)
		}
	}
}
