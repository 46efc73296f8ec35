package checkpoint

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
)

// A small pickle VM for the data.pkl inside torch.save archives. It understands the
// protocol 2-5 opcodes pickle emits for dicts, lists, tuples, scalars, strings, globals
// and persistent ids, and nothing that executes code: a global is only a name, and a call
// means something only if the caller's allow-list (pickleHooks.call) says so.

// pickleLimits bound the memory a hostile pickle can make the VM use. A BLIP-large
// training dump with its optimizer state needs well under 1% of each.
type pickleLimits struct {
	maxBytes  int // size of the pickle itself
	maxValues int // values pushed onto the stack, over the whole run
	maxMarks  int // nesting: open MARKs at one time
	maxLine   int // text lines of GLOBAL / INST / PUT / GET
}

var defaultPickleLimits = pickleLimits{
	maxBytes:  64 << 20,
	maxValues: 4 << 20,
	maxMarks:  10000,
	maxLine:   4096,
}

// pickleHooks give meaning to calls and persistent ids. Both return a value, never an
// error: whatever they cannot build becomes an opaque value, so that an odd object in an
// optimizer or config never stops the weights from loading.
type pickleHooks struct {
	call           func(callable any, args pyTuple) any
	persistentLoad func(pid any) any
}

type unpickler struct {
	data   []byte
	pos    int
	lim    pickleLimits
	hooks  pickleHooks
	stack  []any
	marks  []int
	memo   map[uint32]any
	pushes int
}

var errPickleStop = errors.New("stop")

// unpickle runs the VM over data and returns the value STOP leaves.
func unpickle(data []byte, hooks pickleHooks, lim pickleLimits) (any, error) {
	if len(data) > lim.maxBytes {
		return nil, fmt.Errorf("pickle is %d bytes, more than the limit of %d", len(data), lim.maxBytes)
	}
	u := &unpickler{data: data, lim: lim, hooks: hooks, memo: map[uint32]any{}}
	for {
		start := u.pos
		if u.pos >= len(u.data) {
			return nil, fmt.Errorf("pickle: ended at byte %d without STOP", u.pos)
		}
		op := u.data[u.pos]
		u.pos++
		err := u.step(op)
		if err == errPickleStop {
			if len(u.stack) != 1 || len(u.marks) != 0 {
				return nil, fmt.Errorf("pickle: STOP at byte %d leaves %d values and %d marks", start, len(u.stack), len(u.marks))
			}
			return u.stack[0], nil
		}
		if err != nil {
			return nil, fmt.Errorf("pickle: opcode 0x%02x at byte %d: %w", op, start, err)
		}
	}
}

func (u *unpickler) step(op byte) error {
	switch op {
	case 0x80: // PROTO
		b, err := u.read(1)
		if err != nil {
			return err
		}
		if b[0] > 5 {
			return fmt.Errorf("unsupported pickle protocol %d", b[0])
		}
	case 0x95: // FRAME: framing is only a hint for buffered readers
		_, err := u.read(8)
		return err
	case '.': // STOP
		return errPickleStop

	case 'N': // NONE
		return u.push(nil)
	case 0x88: // NEWTRUE
		return u.push(true)
	case 0x89: // NEWFALSE
		return u.push(false)
	case 'J': // BININT
		b, err := u.read(4)
		if err != nil {
			return err
		}
		return u.push(int64(int32(binary.LittleEndian.Uint32(b))))
	case 'K': // BININT1
		b, err := u.read(1)
		if err != nil {
			return err
		}
		return u.push(int64(b[0]))
	case 'M': // BININT2
		b, err := u.read(2)
		if err != nil {
			return err
		}
		return u.push(int64(binary.LittleEndian.Uint16(b)))
	case 0x8a: // LONG1
		b, err := u.readSized(1)
		if err != nil {
			return err
		}
		return u.push(decodeLong(b))
	case 0x8b: // LONG4
		b, err := u.readSized(4)
		if err != nil {
			return err
		}
		return u.push(decodeLong(b))
	case 'G': // BINFLOAT, big-endian
		b, err := u.read(8)
		if err != nil {
			return err
		}
		return u.push(math.Float64frombits(binary.BigEndian.Uint64(b)))

	case 'X', 'T': // BINUNICODE, BINSTRING (Python 2 str, read as text like torch.load does)
		return u.pushString(4, false)
	case 0x8c, 'U': // SHORT_BINUNICODE, SHORT_BINSTRING
		return u.pushString(1, false)
	case 0x8d: // BINUNICODE8
		return u.pushString(8, false)
	case 'B': // BINBYTES
		return u.pushString(4, true)
	case 'C': // SHORT_BINBYTES
		return u.pushString(1, true)
	case 0x8e, 0x96: // BINBYTES8, BYTEARRAY8
		return u.pushString(8, true)

	case ')': // EMPTY_TUPLE
		return u.push(pyTuple{})
	case 't': // TUPLE
		items, err := u.popMark()
		if err != nil {
			return err
		}
		return u.push(pyTuple(items))
	case 0x85, 0x86, 0x87: // TUPLE1, TUPLE2, TUPLE3
		n := int(op-0x85) + 1
		if len(u.stack)-u.floor() < n {
			return fmt.Errorf("stack underflow")
		}
		t := pyTuple(slices.Clone(u.stack[len(u.stack)-n:]))
		u.stack = u.stack[:len(u.stack)-n]
		return u.push(t)
	case ']': // EMPTY_LIST
		return u.push(&pyList{})
	case 'l': // LIST
		items, err := u.popMark()
		if err != nil {
			return err
		}
		return u.push(&pyList{items: items})
	case '}': // EMPTY_DICT
		return u.push(newDict())
	case 'd': // DICT
		items, err := u.popMark()
		if err != nil {
			return err
		}
		d := newDict()
		if err := setItems(d, items); err != nil {
			return err
		}
		return u.push(d)
	case 0x8f: // EMPTY_SET
		return u.push(&pySet{})
	case 0x91: // FROZENSET
		items, err := u.popMark()
		if err != nil {
			return err
		}
		return u.push(&pySet{items: items})

	case 'a': // APPEND
		v, err := u.pop()
		if err != nil {
			return err
		}
		return u.extend([]any{v})
	case 'e': // APPENDS
		items, err := u.popMark()
		if err != nil {
			return err
		}
		return u.extend(items)
	case 0x90: // ADDITEMS
		items, err := u.popMark()
		if err != nil {
			return err
		}
		return u.extend(items)
	case 's': // SETITEM
		if len(u.stack)-u.floor() < 3 {
			return fmt.Errorf("stack underflow")
		}
		kv := u.stack[len(u.stack)-2:]
		u.stack = u.stack[:len(u.stack)-2]
		return u.setItems(kv)
	case 'u': // SETITEMS
		items, err := u.popMark()
		if err != nil {
			return err
		}
		return u.setItems(items)

	case '(': // MARK
		if len(u.marks) >= u.lim.maxMarks {
			return fmt.Errorf("more than %d nested marks", u.lim.maxMarks)
		}
		u.marks = append(u.marks, len(u.stack))
	case '0': // POP
		if len(u.stack) > u.floor() {
			u.stack = u.stack[:len(u.stack)-1]
			return nil
		}
		_, err := u.popMark()
		return err
	case '1': // POP_MARK
		_, err := u.popMark()
		return err
	case '2': // DUP
		v, err := u.top()
		if err != nil {
			return err
		}
		return u.push(v)

	case 'q': // BINPUT
		b, err := u.read(1)
		if err != nil {
			return err
		}
		return u.put(uint32(b[0]))
	case 'r': // LONG_BINPUT
		b, err := u.read(4)
		if err != nil {
			return err
		}
		return u.put(binary.LittleEndian.Uint32(b))
	case 0x94: // MEMOIZE
		return u.put(uint32(len(u.memo)))
	case 'p': // PUT
		idx, err := u.readIndexLine()
		if err != nil {
			return err
		}
		return u.put(idx)
	case 'h': // BINGET
		b, err := u.read(1)
		if err != nil {
			return err
		}
		return u.get(uint32(b[0]))
	case 'j': // LONG_BINGET
		b, err := u.read(4)
		if err != nil {
			return err
		}
		return u.get(binary.LittleEndian.Uint32(b))
	case 'g': // GET
		idx, err := u.readIndexLine()
		if err != nil {
			return err
		}
		return u.get(idx)

	case 'c': // GLOBAL
		g, err := u.readGlobal()
		if err != nil {
			return err
		}
		return u.push(g)
	case 0x93: // STACK_GLOBAL
		name, err1 := u.pop()
		module, err2 := u.pop()
		if err := errors.Join(err1, err2); err != nil {
			return err
		}
		m, ok1 := module.(string)
		n, ok2 := name.(string)
		if !ok1 || !ok2 {
			return fmt.Errorf("STACK_GLOBAL needs two strings, got %s and %s", describe(module), describe(name))
		}
		return u.push(normalizeGlobal(m, n))
	case 'R', 0x81: // REDUCE, NEWOBJ: call(args) and cls.__new__(cls, *args) alike
		args, err1 := u.pop()
		fn, err2 := u.pop()
		if err := errors.Join(err1, err2); err != nil {
			return err
		}
		t, ok := args.(pyTuple)
		if !ok {
			return fmt.Errorf("call arguments are a %s, not a tuple", describe(args))
		}
		return u.push(u.hooks.call(fn, t))
	case 0x92: // NEWOBJ_EX: keyword arguments never matter to the allow-list
		_, err1 := u.pop()
		args, err2 := u.pop()
		cls, err3 := u.pop()
		if err := errors.Join(err1, err2, err3); err != nil {
			return err
		}
		t, ok := args.(pyTuple)
		if !ok {
			return fmt.Errorf("call arguments are a %s, not a tuple", describe(args))
		}
		return u.push(u.hooks.call(cls, t))
	case 'o': // OBJ
		items, err := u.popMark()
		if err != nil {
			return err
		}
		if len(items) == 0 {
			return fmt.Errorf("OBJ without a class")
		}
		return u.push(u.hooks.call(items[0], pyTuple(items[1:])))
	case 'i': // INST
		g, err := u.readGlobal()
		if err != nil {
			return err
		}
		items, err := u.popMark()
		if err != nil {
			return err
		}
		return u.push(u.hooks.call(g, pyTuple(items)))
	case 'b': // BUILD
		state, err := u.pop()
		if err != nil {
			return err
		}
		target, err := u.top()
		if err != nil {
			return err
		}
		// Only opaque objects keep their state; an OrderedDict's state is attributes such
		// as a state dict's _metadata, which no weight depends on.
		if o, ok := target.(*pyObject); ok {
			o.state = state
		}
	case 'Q': // BINPERSID
		pid, err := u.pop()
		if err != nil {
			return err
		}
		return u.push(u.hooks.persistentLoad(pid))
	case 'P': // PERSID
		line, err := u.readLine()
		if err != nil {
			return err
		}
		return u.push(u.hooks.persistentLoad(line))
	default:
		return fmt.Errorf("unsupported pickle opcode")
	}
	return nil
}

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
