package checkpoint

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
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
