package checkpoint

import (
	"fmt"
	"math"
	"strings"
)

// What torch.save's pickle may build, and nothing more: the allow-list of calls the VM
// honours for a torch archive. Every other global becomes an opaque value.

// torchStorage is a storage a persistent id names: archive/data/<key>, numel elements
// of dtype.
type torchStorage struct {
	key      string
	dtype    DType
	numel    int64
	location string
}

// torchTensor is a view of a storage, as torch._utils._rebuild_tensor_v2 describes it.
type torchTensor struct {
	storage *torchStorage
	dtype   DType
	offset  int64 // in elements of dtype
	shape   []int64
	strides []int64
}

var torchHooks = pickleHooks{call: torchCall, persistentLoad: torchPersistentLoad}

func torchCall(callable any, args pyTuple) any {
	g, ok := callable.(pyGlobal)
	if !ok {
		return &pyObject{callable: callable, args: args}
	}
	var (
		v   any
		err error
	)
	switch g.String() {
	case "collections.OrderedDict", "builtins.dict":
		v, err = dictFromPairs(args)
	case "torch._utils._rebuild_tensor_v2":
		v, err = rebuildTensor(args, false)
	case "torch._utils._rebuild_tensor_v3":
		v, err = rebuildTensor(args, true)
	case "torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state":
		// (data, requires_grad, backward_hooks[, state]): a Parameter is its data.
		v, err = argTensor(args, 0, g.Name)
	case "torch._tensor._rebuild_from_type_v2":
		// (func, new_type, args, state): a tensor subclass rebuilt by func(*args).
		v, err = rebuildFromType(args)
	default:
		return &pyObject{callable: g, args: args}
	}
	if err != nil {
		return &pyObject{callable: g, args: args, err: err}
	}
	return v
}

// dictFromPairs builds OrderedDict() or OrderedDict([(key, value), ...]).
func dictFromPairs(args pyTuple) (*pyDict, error) {
	d := newDict()
	if len(args) == 0 {
		return d, nil
	}
	var pairs []any
	switch a := args[0].(type) {
	case *pyList:
		pairs = a.items
	case pyTuple:
		pairs = a
	}
	if len(args) != 1 || pairs == nil && args[0] != nil {
		return nil, fmt.Errorf("dict from %d arguments of type %s", len(args), describe(args[0]))
	}
	for _, p := range pairs {
		kv, ok := p.(pyTuple)
		if !ok || len(kv) != 2 {
			return nil, fmt.Errorf("dict item is a %s, not a (key, value) pair", describe(p))
		}
		if err := d.set(kv[0], kv[1]); err != nil {
			return nil, err
		}
	}
	return d, nil
}

func argTensor(args pyTuple, i int, fn string) (*torchTensor, error) {
	if len(args) <= i {
		return nil, fmt.Errorf("%s: %d arguments", fn, len(args))
	}
	return asTensor(args[i])
}

func asTensor(v any) (*torchTensor, error) {
	switch t := v.(type) {
	case *torchTensor:
		return t, nil
	case *pyObject:
		if t.err != nil {
			return nil, t.err
		}
	}
	return nil, fmt.Errorf("expected a tensor, got %s", describe(v))
}

func rebuildFromType(args pyTuple) (*torchTensor, error) {
	if len(args) < 3 {
		return nil, fmt.Errorf("_rebuild_from_type_v2: %d arguments", len(args))
	}
	inner, ok := args[2].(pyTuple)
	if !ok {
		return nil, fmt.Errorf("_rebuild_from_type_v2: arguments are a %s", describe(args[2]))
	}
	return asTensor(torchCall(args[0], inner))
}

// rebuildTensor checks the arguments of
//
//	_rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
//	_rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype[, metadata])
//
// v3 views a byte storage as dtype; v2's dtype is the storage's. Bounds against the
// storage are checked later, when the tensor turns out to be a weight.
func rebuildTensor(args pyTuple, v3 bool) (*torchTensor, error) {
	fn := "_rebuild_tensor_v2"
	want := 6
	if v3 {
		fn, want = "_rebuild_tensor_v3", 7
	}
	if len(args) < want || len(args) > want+1 {
		return nil, fmt.Errorf("%s: %d arguments", fn, len(args))
	}
	st, ok := args[0].(*torchStorage)
	if !ok {
		if o, isObj := args[0].(*pyObject); isObj && o.err != nil {
			return nil, o.err
		}
		return nil, fmt.Errorf("%s: storage is a %s", fn, describe(args[0]))
	}
	offset, ok := args[1].(int64)
	if !ok || offset < 0 {
		return nil, fmt.Errorf("%s: bad storage offset %v", fn, args[1])
	}
	shape, err := intTuple(args[2])
	if err != nil {
		return nil, fmt.Errorf("%s: size: %w", fn, err)
	}
	strides, err := intTuple(args[3])
	if err != nil {
		return nil, fmt.Errorf("%s: stride: %w", fn, err)
	}
	if _, _, err := viewExtent(shape, strides); err != nil {
		return nil, fmt.Errorf("%s: %w", fn, err)
	}
	t := &torchTensor{storage: st, dtype: st.dtype, offset: offset, shape: shape, strides: strides}
	if v3 {
		g, ok := args[6].(pyGlobal)
		if !ok || g.Module != "torch" {
			return nil, fmt.Errorf("%s: dtype is a %s", fn, describe(args[6]))
		}
		if t.dtype, err = ParseTorchDType(g.Name); err != nil {
			return nil, fmt.Errorf("%s: %w", fn, err)
		}
	}
	return t, nil
}

func intTuple(v any) ([]int64, error) {
	var items []any
	switch t := v.(type) {
	case pyTuple:
		items = t
	case *pyList:
		items = t.items
	default:
		return nil, fmt.Errorf("a %s, not a tuple of ints", describe(v))
	}
	out := make([]int64, len(items))
	for i, e := range items {
		n, ok := e.(int64)
		if !ok {
			return nil, fmt.Errorf("element %d is a %s, not an int", i, describe(e))
		}
		out[i] = n
	}
	return out, nil
}

// torchPersistentLoad resolves torch.save's persistent id
// ('storage', storage_type, key, location, numel).
func torchPersistentLoad(pid any) any {
	st, err := parseStoragePID(pid)
	if err != nil {
		return &pyObject{callable: pyGlobal{"torch", "persistent_load"}, err: err}
	}
	return st
}

func parseStoragePID(pid any) (*torchStorage, error) {
	t, ok := pid.(pyTuple)
	if !ok || len(t) != 5 || t[0] != "storage" {
		return nil, fmt.Errorf("persistent id is not ('storage', type, key, location, numel)")
	}
	typ, ok := t[1].(pyGlobal)
	if !ok || !strings.HasPrefix(typ.Module, "torch") {
		return nil, fmt.Errorf("storage type is a %s", describe(t[1]))
	}
	st := &torchStorage{}
	var err error
	if typ.Name == "UntypedStorage" { // numel counts bytes
		st.dtype = U8
	} else if st.dtype, err = ParseTorchStorage(typ.Name); err != nil {
		return nil, err
	}
	switch k := t[2].(type) {
	case string:
		st.key = k
	case int64:
		st.key = fmt.Sprint(k)
	default:
		return nil, fmt.Errorf("storage key is a %s", describe(t[2]))
	}
	if st.key == "" || strings.ContainsAny(st.key, "/\\") || st.key == ".." {
		return nil, fmt.Errorf("storage key %q is not a plain record name", st.key)
	}
	if st.location, ok = t[3].(string); !ok {
		return nil, fmt.Errorf("storage location is a %s", describe(t[3]))
	}
	if st.numel, ok = t[4].(int64); !ok || st.numel < 0 || st.numel > math.MaxInt64/8 {
		return nil, fmt.Errorf("storage %q: bad numel %v", st.key, t[4])
	}
	return st, nil
}
