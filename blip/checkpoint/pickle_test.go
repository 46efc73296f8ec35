package checkpoint

import (
	"bytes"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// plainHooks builds nothing: every call is opaque, every persistent id is echoed.
var plainHooks = pickleHooks{
	call:           func(fn any, args pyTuple) any { return &pyObject{callable: fn, args: args} },
	persistentLoad: func(pid any) any { return pyTuple{"pid", pid} },
}

func dictOf(kv ...any) *pyDict {
	d := newDict()
	if err := setItems(d, kv); err != nil {
		panic(err)
	}
	return d
}

func TestUnpickleBuildsPlainValues(t *testing.T) {
	tests := []struct {
		name   string
		pickle string
		want   any
	}{
		{"small ints", "\x80\x02(K\x05M\x01\x01J\xff\xff\xff\xfft.", pyTuple{int64(5), int64(257), int64(-1)}},
		{"LONG1 negative and wide", "\x80\x02\x8a\x02\x00\x80\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x01\x86.",
			pyTuple{int64(-32768), pyBigInt{0, 0, 0, 0, 0, 0, 0, 0, 1}}},
		{"LONG4 and empty LONG1", "\x80\x02\x8b\x01\x00\x00\x00\x07\x8a\x00\x86.", pyTuple{int64(7), int64(0)}},
		{"float, bools, None", "\x80\x02(G?\xf8\x00\x00\x00\x00\x00\x00\x88\x89N)t.", pyTuple{1.5, true, false, nil, pyTuple{}}},
		{"strings and bytes", "\x80\x04(\x8c\x02hiX\x01\x00\x00\x00xC\x02\x00\x01U\x01s\x8d\x01\x00\x00\x00\x00\x00\x00\x00z\x94t.",
			pyTuple{"hi", "x", pyBytes{0, 1}, "s", "z"}},
		{"memo", "\x80\x02X\x01\x00\x00\x00aq\x00h\x00r\x01\x00\x00\x00j\x01\x00\x00\x00\x87.", pyTuple{"a", "a", "a"}},
		{"text memo", "\x80\x02X\x01\x00\x00\x00ap7\ng7\n\x86.", pyTuple{"a", "a"}},
		{"list appends", "\x80\x02]q\x00(K\x01K\x02eK\x03a.", &pyList{items: []any{int64(1), int64(2), int64(3)}}},
		{"dict setitems, later value wins", "\x80\x02}(X\x01\x00\x00\x00aK\x01K\x07K\x02X\x01\x00\x00\x00aK\x03u.",
			dictOf("a", int64(3), int64(7), int64(2))},
		{"dict with int and tuple keys", "\x80\x02}(K\x00K\x01K\x01K\x02\x86K\x03u.",
			dictOf(int64(0), int64(1), pyTuple{int64(1), int64(2)}, int64(3))},
		{"DICT and LIST opcodes", "\x80\x02(X\x01\x00\x00\x00k(K\x01ld.", dictOf("k", &pyList{items: []any{int64(1)}})},
		{"frame", "\x80\x04\x95\x03\x00\x00\x00\x00\x00\x00\x00K\x01.", int64(1)},
		{"global from protocol 2 builtins", "\x80\x02c__builtin__\nset\n.", pyGlobal{"builtins", "set"}},
		{"stack global", "\x80\x04\x8c\x0bcollections\x8c\x0bOrderedDict\x93.", pyGlobal{"collections", "OrderedDict"}},
		{"call stays opaque", "\x80\x02cos\nsystem\nX\x02\x00\x00\x00rm\x85R.",
			&pyObject{callable: pyGlobal{"os", "system"}, args: pyTuple{"rm"}}},
		{"build sets an opaque object's state", "\x80\x02cargparse\nNamespace\n)\x81}X\x01\x00\x00\x00aK\x01sb.",
			&pyObject{callable: pyGlobal{"argparse", "Namespace"}, args: pyTuple{}, state: dictOf("a", int64(1))}},
		{"persistent id", "\x80\x02X\x01\x00\x00\x000\x85Q.", pyTuple{"pid", pyTuple{"0"}}},
		{"sets", "\x80\x04\x8f(K\x01\x90(K\x02\x91\x86.", pyTuple{&pySet{items: []any{int64(1)}}, &pySet{items: []any{int64(2)}}}},
		{"dup and pop", "\x80\x02K\x01K\x022K\x030\x86\x86.", pyTuple{int64(1), pyTuple{int64(2), int64(2)}}},
		{"pop mark", "\x80\x02K\x01(K\x02K\x031.", int64(1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := unpickle([]byte(tt.pickle), plainHooks, defaultPickleLimits)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %#v\nwant %#v", got, tt.want)
			}
		})
	}
}

func TestUnpickleRejectsMalformedPickles(t *testing.T) {
	small := pickleLimits{maxBytes: 1 << 10, maxValues: 50, maxMarks: 5, maxLine: 16}
	tests := []struct {
		name   string
		pickle string
		lim    pickleLimits
		want   string
	}{
		{"no STOP", "\x80\x02K\x01", defaultPickleLimits, "ended at byte 4 without STOP"},
		{"stack underflow", "\x80\x02\x86.", defaultPickleLimits, "opcode 0x86 at byte 2: stack underflow"},
		{"underflow through a mark", "\x80\x02K\x01(a.", defaultPickleLimits, "opcode 0x61 at byte 5: stack underflow"},
		{"STOP leaves values", "\x80\x02K\x01K\x02.", defaultPickleLimits, "STOP at byte 6 leaves 2 values"},
		{"unknown opcode", "\x80\x02\xff.", defaultPickleLimits, "opcode 0xff at byte 2: unsupported pickle opcode"},
		{"extension registry", "\x80\x02\x82\x01.", defaultPickleLimits, "unsupported pickle opcode"},
		{"out-of-band buffer", "\x80\x05\x97.", defaultPickleLimits, "unsupported pickle opcode"},
		{"protocol too new", "\x80\x06K\x01.", defaultPickleLimits, "unsupported pickle protocol 6"},
		{"missing memo", "\x80\x02h\x05.", defaultPickleLimits, "memo index 5 was never stored"},
		{"string past the end", "\x80\x02X\xff\xff\xff\xffab.", defaultPickleLimits, "truncated: length 4294967295"},
		{"huge BINUNICODE8", "\x80\x04\x8d\xff\xff\xff\xff\xff\xff\xff\xff.", defaultPickleLimits, "truncated"},
		{"huge LONG4", "\x80\x02\x8b\xff\xff\xff\x7f.", defaultPickleLimits, "truncated"},
		{"call with non-tuple args", "\x80\x02cos\nsystem\nK\x01R.", defaultPickleLimits, "call arguments are a int"},
		{"append to an int", "\x80\x02K\x01K\x02a.", defaultPickleLimits, "cannot append to a int"},
		{"setitem on a list", "\x80\x02]K\x01K\x02s.", defaultPickleLimits, "cannot set items on a list"},
		{"odd dict items", "\x80\x02}(K\x01u.", defaultPickleLimits, "odd number of items"},
		{"unhashable key", "\x80\x02}]K\x01s.", defaultPickleLimits, "unhashable dict key of type list"},
		{"STACK_GLOBAL of ints", "\x80\x04K\x01K\x02\x93.", defaultPickleLimits, "STACK_GLOBAL needs two strings"},
		{"global line too long", "\x80\x02c" + strings.Repeat("m", 40) + "\nx\n.", small, "no newline within 16 bytes"},
		{"too big", strings.Repeat("N0", 600) + ".", small, "more than the limit of 1024"},
		{"too many values", "\x80\x02" + strings.Repeat("N0", 51) + "N.", small, "more than 50 values"},
		{"too deeply nested", "\x80\x02((((((", small, "more than 5 nested marks"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := unpickle([]byte(tt.pickle), plainHooks, tt.lim)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestDictKeysCannotCostExponentialWork(t *testing.T) {
	// t0 = (); t(i+1) = (ti, ti): a key whose naive encoding doubles at every level.
	var p bytes.Buffer
	p.WriteString("\x80\x02})")
	for range 60 {
		p.WriteString("2\x86") // DUP, TUPLE2
	}
	p.WriteString("K\x01s.")
	_, err := unpickle(p.Bytes(), plainHooks, defaultPickleLimits)
	if err == nil || !strings.Contains(err.Error(), "dict key too large") {
		t.Fatalf("err = %v", err)
	}
}

func TestTorchAllowListBuildsOnlyWhatItKnows(t *testing.T) {
	storage := &torchStorage{key: "0", dtype: U8, numel: 64, location: "cpu"}
	v2args := pyTuple{storage, int64(4), pyTuple{int64(2), int64(3)}, pyTuple{int64(3), int64(1)}, false, newDict()}
	g := func(module, name string) pyGlobal { return pyGlobal{module, name} }
	rebuild := g("torch._utils", "_rebuild_tensor_v2")
	tensor := &torchTensor{storage: storage, dtype: U8, offset: 4, shape: []int64{2, 3}, strides: []int64{3, 1}}
	tests := []struct {
		name string
		fn   pyGlobal
		args pyTuple
		want any
	}{
		{"empty OrderedDict", g("collections", "OrderedDict"), pyTuple{}, newDict()},
		{"OrderedDict of pairs", g("collections", "OrderedDict"), pyTuple{&pyList{items: []any{pyTuple{"a", int64(1)}}}}, dictOf("a", int64(1))},
		{"tensor", rebuild, v2args, tensor},
		{"tensor with metadata", rebuild, append(slices.Clone(v2args), newDict()), tensor},
		{"parameter", g("torch._utils", "_rebuild_parameter"), pyTuple{tensor, true, newDict()}, tensor},
		{"tensor subclass", g("torch._tensor", "_rebuild_from_type_v2"), pyTuple{rebuild, g("torch", "Tensor"), v2args, newDict()}, tensor},
		{"v3 views bytes as a dtype", g("torch._utils", "_rebuild_tensor_v3"),
			pyTuple{storage, int64(1), pyTuple{int64(2)}, pyTuple{int64(1)}, false, newDict(), g("torch", "float16")},
			&torchTensor{storage: storage, dtype: F16, offset: 1, shape: []int64{2}, strides: []int64{1}}},
		{"unknown global stays opaque", g("numpy", "dtype"), pyTuple{"i8"}, &pyObject{callable: g("numpy", "dtype"), args: pyTuple{"i8"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := torchCall(tt.fn, tt.args); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %#v\nwant %#v", got, tt.want)
			}
		})
	}
	for _, bad := range []struct {
		fn   pyGlobal
		args pyTuple
		want string
	}{
		{g("collections", "OrderedDict"), pyTuple{int64(5)}, "dict from 1 arguments of type int"},
		{rebuild, v2args[:4], "_rebuild_tensor_v2: 4 arguments"},
		{rebuild, pyTuple{storage, int64(-1), pyTuple{}, pyTuple{}, false, nil}, "bad storage offset -1"},
		{rebuild, pyTuple{storage, int64(0), pyTuple{int64(2)}, pyTuple{}, false, nil}, "0 strides for 1 dimensions"},
		{rebuild, pyTuple{"storage", int64(0), pyTuple{}, pyTuple{}, false, nil}, "storage is a str"},
		{g("torch._utils", "_rebuild_parameter"), pyTuple{int64(1), true, nil}, "expected a tensor, got int"},
	} {
		o, ok := torchCall(bad.fn, bad.args).(*pyObject)
		if !ok || o.err == nil || !strings.Contains(o.err.Error(), bad.want) {
			t.Errorf("%s%v: got %#v, want an opaque value with error %q", bad.fn, bad.args, o, bad.want)
		}
	}
}
