package checkpoint

import "fmt"

// DType is the element type of a stored tensor. Only the types BLIP checkpoints and
// capfilt's own files use are known; anything else is rejected by name, never guessed.
type DType int

const (
	InvalidDType DType = iota
	F32
	F64
	F16
	BF16
	I64
	I32
	I16
	I8
	U8
	Bool
)

type dtypeInfo struct {
	size        int
	safetensors string // dtype string in a safetensors header
	storage     string // torch legacy storage class, the name torch.save pickles
	torch       string // canonical torch dtype attribute, e.g. torch.float32
}

var dtypeInfos = [...]dtypeInfo{
	F32:  {4, "F32", "FloatStorage", "float32"},
	F64:  {8, "F64", "DoubleStorage", "float64"},
	F16:  {2, "F16", "HalfStorage", "float16"},
	BF16: {2, "BF16", "BFloat16Storage", "bfloat16"},
	I64:  {8, "I64", "LongStorage", "int64"},
	I32:  {4, "I32", "IntStorage", "int32"},
	I16:  {2, "I16", "ShortStorage", "int16"},
	I8:   {1, "I8", "CharStorage", "int8"},
	U8:   {1, "U8", "ByteStorage", "uint8"},
	Bool: {1, "BOOL", "BoolStorage", "bool"},
}

// torchDTypeAliases are the other attribute names torch exposes for the same dtypes
// (torch.float is torch.float32); a pickle may name either.
var torchDTypeAliases = map[string]DType{
	"float": F32, "double": F64, "half": F16, "long": I64, "int": I32, "short": I16,
}

func (d DType) info() (dtypeInfo, bool) {
	if d <= InvalidDType || int(d) >= len(dtypeInfos) {
		return dtypeInfo{}, false
	}
	return dtypeInfos[d], true
}

// Valid reports whether d is one of the known dtypes.
func (d DType) Valid() bool { _, ok := d.info(); return ok }

// Size is the size of one element in bytes (0 for an invalid dtype).
func (d DType) Size() int { i, _ := d.info(); return i.size }

// String is the safetensors name ("F32", "BF16", "BOOL", ...).
func (d DType) String() string {
	if i, ok := d.info(); ok {
		return i.safetensors
	}
	return fmt.Sprintf("DType(%d)", int(d))
}

// SafetensorsName is the dtype string safetensors headers use.
func (d DType) SafetensorsName() string { i, _ := d.info(); return i.safetensors }

// TorchStorageName is the legacy typed-storage class torch.save pickles for d
// ("FloatStorage", "BFloat16Storage", ...).
func (d DType) TorchStorageName() string { i, _ := d.info(); return i.storage }

// TorchName is the torch dtype attribute ("float32" for torch.float32).
func (d DType) TorchName() string { i, _ := d.info(); return i.torch }

// ParseSafetensorsDType maps a safetensors dtype string to a DType.
func ParseSafetensorsDType(s string) (DType, error) {
	for d := F32; int(d) < len(dtypeInfos); d++ {
		if dtypeInfos[d].safetensors == s {
			return d, nil
		}
	}
	return InvalidDType, fmt.Errorf("unsupported safetensors dtype %q", s)
}

// ParseTorchStorage maps a torch storage class name ("HalfStorage") to a DType.
func ParseTorchStorage(name string) (DType, error) {
	for d := F32; int(d) < len(dtypeInfos); d++ {
		if dtypeInfos[d].storage == name {
			return d, nil
		}
	}
	return InvalidDType, fmt.Errorf("unsupported torch storage type %q", name)
}

// ParseTorchDType maps a torch dtype attribute name ("float16", "half") to a DType.
func ParseTorchDType(name string) (DType, error) {
	for d := F32; int(d) < len(dtypeInfos); d++ {
		if dtypeInfos[d].torch == name {
			return d, nil
		}
	}
	if d, ok := torchDTypeAliases[name]; ok {
		return d, nil
	}
	return InvalidDType, fmt.Errorf("unsupported torch dtype %q", name)
}
