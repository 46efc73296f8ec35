package torch

import (
	"fmt"
	"strconv"
	"strings"
)

// DType is an element type. The values match the C ABI's ct_dtype codes.
type DType int

const (
	Float32 DType = iota
	Float64
	Float16
	BFloat16
	Int64
	Int32
	Int16
	Int8
	Uint8
	Bool
	Invalid DType = -1
)

var dtypeNames = [...]string{"float32", "float64", "float16", "bfloat16", "int64", "int32", "int16", "int8", "uint8", "bool"}
var dtypeSizes = [...]int{4, 8, 2, 2, 8, 4, 2, 1, 1, 1}

func (d DType) String() string {
	if d < 0 || int(d) >= len(dtypeNames) {
		return "invalid"
	}
	return dtypeNames[d]
}

// Size is the number of bytes of one element.
func (d DType) Size() int {
	if d < 0 || int(d) >= len(dtypeSizes) {
		return 0
	}
	return dtypeSizes[d]
}

// IsFloat reports whether d is a floating-point type.
func (d DType) IsFloat() bool { return d == Float32 || d == Float64 || d == Float16 || d == BFloat16 }

// ParseDType reads a dtype name as DType.String writes it (also "fp32", "bf16", "fp16").
func ParseDType(s string) (DType, error) {
	switch strings.ToLower(s) {
	case "fp32", "f32":
		return Float32, nil
	case "bf16":
		return BFloat16, nil
	case "fp16", "f16", "half":
		return Float16, nil
	}
	for i, n := range dtypeNames {
		if strings.EqualFold(s, n) {
			return DType(i), nil
		}
	}
	return Invalid, fmt.Errorf("unknown dtype %q (want one of %s)", s, strings.Join(dtypeNames[:], ", "))
}

// Device is where a tensor lives: the CPU or one CUDA device.
type Device struct {
	CUDA  bool
	Index int
}

// CPU is the host.
var CPU = Device{}

// CUDA returns CUDA device i.
func CUDA(i int) Device { return Device{CUDA: true, Index: i} }

func (d Device) String() string {
	if d.CUDA {
		return "cuda:" + strconv.Itoa(d.Index)
	}
	return "cpu"
}

// ParseDevice reads "cpu", "cuda" (device 0) or "cuda:N".
func ParseDevice(s string) (Device, error) {
	switch {
	case s == "cpu":
		return CPU, nil
	case s == "cuda":
		return CUDA(0), nil
	case strings.HasPrefix(s, "cuda:"):
		i, err := strconv.Atoi(s[5:])
		if err != nil || i < 0 {
			return CPU, fmt.Errorf("bad device %q: want cpu, cuda or cuda:N", s)
		}
		return CUDA(i), nil
	}
	return CPU, fmt.Errorf("bad device %q: want cpu, cuda or cuda:N", s)
}
