package checkpoint

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// The pickle VM builds only these plain values. Python None is Go nil; bool, int64,
// float64 and string stand for themselves.
type (
	pyTuple  []any
	pyBytes  []byte
	pyBigInt []byte // an int wider than 64 bits, kept as its little-endian bytes

	// pyGlobal is a reference to a Python class or function by name. Looking one up
	// never imports or runs anything; only an allow-list gives it meaning on REDUCE.
	pyGlobal struct{ Module, Name string }

	pyList struct{ items []any }
	pySet  struct{ items []any }

	// pyDict keeps insertion order, as Python dicts and OrderedDicts do.
	pyDict struct {
		keys  []any
		vals  []any
		index map[dictKey]int
	}

	// pyObject is what a call or class instantiation outside the allow-list yields
	// (argparse.Namespace, numpy scalars, ...): it is carried along, never built. err is
	// set when an allow-listed constructor rejected its arguments, so the failure
	// surfaces only if a weight depends on the value.
	pyObject struct {
		callable any
		args     pyTuple
		state    any
		err      error
	}
)

func (g pyGlobal) String() string { return g.Module + "." + g.Name }

func newDict() *pyDict { return &pyDict{index: map[dictKey]int{}} }

func (d *pyDict) set(k, v any) error {
	hk, err := hashKey(k)
	if err != nil {
		return err
	}
	if i, ok := d.index[hk]; ok {
		d.vals[i] = v
		return nil
	}
	d.index[hk] = len(d.keys)
	d.keys = append(d.keys, k)
	d.vals = append(d.vals, v)
	return nil
}

func (d *pyDict) get(k string) (any, bool) {
	i, ok := d.index[dictKey{kind: 's', s: k}]
	if !ok {
		return nil, false
	}
	return d.vals[i], true
}

// dictKey is a comparable stand-in for a hashable Python value.
type dictKey struct {
	kind byte
	i    int64
	s    string
}

// Limits on composite dict keys: real checkpoints use strings and ints, so a deep or
// huge tuple key only comes from a hostile file and must not cost exponential time.
const (
	maxKeyDepth = 16
	maxKeyBytes = 4096
)

func hashKey(v any) (dictKey, error) {
	switch k := v.(type) {
	case string:
		return dictKey{kind: 's', s: k}, nil
	case int64:
		return dictKey{kind: 'i', i: k}, nil
	case bool: // Python: True == 1
		if k {
			return dictKey{kind: 'i', i: 1}, nil
		}
		return dictKey{kind: 'i', i: 0}, nil
	case nil:
		return dictKey{kind: 'n'}, nil
	}
	var b strings.Builder
	if err := encodeKey(&b, v, 0); err != nil {
		return dictKey{}, err
	}
	return dictKey{kind: 't', s: b.String()}, nil
}

func encodeKey(b *strings.Builder, v any, depth int) error {
	if depth > maxKeyDepth || b.Len() > maxKeyBytes {
		return fmt.Errorf("dict key too large or too deeply nested")
	}
	switch k := v.(type) {
	case nil:
		b.WriteString("N;")
	case bool:
		if k {
			b.WriteString("i1;")
		} else {
			b.WriteString("i0;")
		}
	case int64:
		b.WriteString("i" + strconv.FormatInt(k, 10) + ";")
	case float64:
		if k == math.Trunc(k) && math.Abs(k) < 1<<62 { // Python: 1.0 == 1
			b.WriteString("i" + strconv.FormatInt(int64(k), 10) + ";")
		} else {
			b.WriteString("f" + strconv.FormatUint(math.Float64bits(k), 16) + ";")
		}
	case string:
		b.WriteString("s" + strconv.Itoa(len(k)) + ":" + k)
	case pyBytes:
		b.WriteString("b" + strconv.Itoa(len(k)) + ":" + string(k))
	case pyBigInt:
		b.WriteString("I" + strconv.Itoa(len(k)) + ":" + string(k))
	case pyGlobal:
		b.WriteString("g" + strconv.Itoa(len(k.Module)) + ":" + k.Module + k.Name + ";")
	case pyTuple:
		b.WriteString("(")
		for _, e := range k {
			if err := encodeKey(b, e, depth+1); err != nil {
				return err
			}
		}
		b.WriteString(")")
	default:
		return fmt.Errorf("unhashable dict key of type %s", describe(v))
	}
	if b.Len() > maxKeyBytes {
		return fmt.Errorf("dict key too large or too deeply nested")
	}
	return nil
}

// describe names a value's Python type for error messages without walking into it.
func describe(v any) string {
	switch x := v.(type) {
	case nil:
		return "None"
	case bool:
		return "bool"
	case int64, pyBigInt:
		return "int"
	case float64:
		return "float"
	case string:
		return "str"
	case pyBytes:
		return "bytes"
	case pyTuple:
		return "tuple"
	case *pyList:
		return "list"
	case *pySet:
		return "set"
	case *pyDict:
		return "dict"
	case pyGlobal:
		return "global " + x.String()
	case *pyObject:
		if g, ok := x.callable.(pyGlobal); ok {
			return g.String() + " object"
		}
		return "opaque object"
	case *torchStorage:
		return "torch storage"
	case *torchTensor:
		return "tensor"
	}
	return fmt.Sprintf("%T", v)
}

// decodeLong reads a pickle LONG1/LONG4 payload: little-endian two's complement.
func decodeLong(b []byte) any {
	if len(b) == 0 {
		return int64(0)
	}
	if len(b) > 8 {
		return pyBigInt(append([]byte(nil), b...))
	}
	var buf [8]byte
	if b[len(b)-1]&0x80 != 0 {
		buf = [8]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	}
	copy(buf[:], b)
	return int64(binary.LittleEndian.Uint64(buf[:]))
}
