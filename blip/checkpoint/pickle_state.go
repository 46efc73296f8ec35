package checkpoint

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"
)

// The unpickler's state: its input, stack, marks and memo. Every length read from the
// input is checked against what is left of it before anything is allocated.

func (u *unpickler) read(n int) ([]byte, error) {
	if n < 0 || n > len(u.data)-u.pos {
		return nil, fmt.Errorf("truncated: wants %d bytes, %d left", n, len(u.data)-u.pos)
	}
	b := u.data[u.pos : u.pos+n]
	u.pos += n
	return b, nil
}

// readSized reads a little-endian length of width bytes, then that many bytes.
func (u *unpickler) readSized(width int) ([]byte, error) {
	b, err := u.read(width)
	if err != nil {
		return nil, err
	}
	var n uint64
	switch width {
	case 1:
		n = uint64(b[0])
	case 4:
		n = uint64(binary.LittleEndian.Uint32(b))
	default:
		n = binary.LittleEndian.Uint64(b)
	}
	if n > uint64(len(u.data)-u.pos) {
		return nil, fmt.Errorf("truncated: length %d, %d bytes left", n, len(u.data)-u.pos)
	}
	return u.read(int(n))
}

func (u *unpickler) pushString(width int, asBytes bool) error {
	b, err := u.readSized(width)
	if err != nil {
		return err
	}
	if asBytes {
		return u.push(pyBytes(bytes.Clone(b)))
	}
	return u.push(string(b))
}

func (u *unpickler) readLine() (string, error) {
	rest := u.data[u.pos:]
	i := bytes.IndexByte(rest[:min(len(rest), u.lim.maxLine+1)], '\n')
	if i < 0 {
		return "", fmt.Errorf("no newline within %d bytes", u.lim.maxLine)
	}
	u.pos += i + 1
	return string(rest[:i]), nil
}

func (u *unpickler) readIndexLine() (uint32, error) {
	line, err := u.readLine()
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(line, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("bad memo index %q", line)
	}
	return uint32(n), nil
}

func (u *unpickler) readGlobal() (pyGlobal, error) {
	module, err := u.readLine()
	if err != nil {
		return pyGlobal{}, err
	}
	name, err := u.readLine()
	if err != nil {
		return pyGlobal{}, err
	}
	return normalizeGlobal(module, name), nil
}

// normalizeGlobal maps the Python 2 module names protocol-2 pickles use to Python 3's.
func normalizeGlobal(module, name string) pyGlobal {
	switch module {
	case "__builtin__":
		module = "builtins"
	case "copy_reg":
		module = "copyreg"
	}
	return pyGlobal{Module: module, Name: name}
}

func (u *unpickler) push(v any) error {
	u.pushes++
	if u.pushes > u.lim.maxValues {
		return fmt.Errorf("more than %d values", u.lim.maxValues)
	}
	u.stack = append(u.stack, v)
	return nil
}

// floor is the stack index the innermost MARK protects: ops other than the mark ops
// must not reach below it.
func (u *unpickler) floor() int {
	if len(u.marks) == 0 {
		return 0
	}
	return u.marks[len(u.marks)-1]
}

func (u *unpickler) pop() (any, error) {
	if len(u.stack) <= u.floor() {
		return nil, fmt.Errorf("stack underflow")
	}
	v := u.stack[len(u.stack)-1]
	u.stack = u.stack[:len(u.stack)-1]
	return v, nil
}

func (u *unpickler) top() (any, error) {
	if len(u.stack) <= u.floor() {
		return nil, fmt.Errorf("stack underflow")
	}
	return u.stack[len(u.stack)-1], nil
}

func (u *unpickler) popMark() ([]any, error) {
	if len(u.marks) == 0 {
		return nil, fmt.Errorf("no MARK to pop to")
	}
	m := u.marks[len(u.marks)-1]
	u.marks = u.marks[:len(u.marks)-1]
	items := slices.Clone(u.stack[m:])
	clear(u.stack[m:])
	u.stack = u.stack[:m]
	return items, nil
}

func (u *unpickler) put(idx uint32) error {
	v, err := u.top()
	if err != nil {
		return err
	}
	if len(u.memo) >= u.lim.maxValues {
		return fmt.Errorf("more than %d memo entries", u.lim.maxValues)
	}
	u.memo[idx] = v
	return nil
}

func (u *unpickler) get(idx uint32) error {
	v, ok := u.memo[idx]
	if !ok {
		return fmt.Errorf("memo index %d was never stored", idx)
	}
	return u.push(v)
}

// extend appends items to the list or set on top of the stack (APPEND, APPENDS, ADDITEMS).
func (u *unpickler) extend(items []any) error {
	target, err := u.top()
	if err != nil {
		return err
	}
	switch t := target.(type) {
	case *pyList:
		t.items = append(t.items, items...)
	case *pySet:
		t.items = append(t.items, items...)
	case *pyObject: // a list-like class we do not build: its items are dropped with it
	default:
		return fmt.Errorf("cannot append to a %s", describe(target))
	}
	return nil
}

// setItems stores key/value pairs into the dict on top of the stack (SETITEM, SETITEMS).
func (u *unpickler) setItems(kv []any) error {
	target, err := u.top()
	if err != nil {
		return err
	}
	switch t := target.(type) {
	case *pyDict:
		return setItems(t, kv)
	case *pyObject: // a dict-like class we do not build
		if len(kv)%2 != 0 {
			return fmt.Errorf("odd number of items for a dict")
		}
		return nil
	}
	return fmt.Errorf("cannot set items on a %s", describe(target))
}

func setItems(d *pyDict, kv []any) error {
	if len(kv)%2 != 0 {
		return fmt.Errorf("odd number of items for a dict")
	}
	for i := 0; i < len(kv); i += 2 {
		if err := d.set(kv[i], kv[i+1]); err != nil {
			return err
		}
	}
	return nil
}
