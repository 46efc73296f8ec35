package torch

// #include "capfilt_torch.h"
import "C"

import (
	"runtime"
	"sync"
)

// Scope owns tensors and frees them all at Close, except those handed on with Keep.
//
// A tensor belongs to a scope in one of three ways: an op's result joins the deepest
// open scope among the op's operands; Track adopts a tensor the caller owns; Ref adds
// a second handle on a tensor owned elsewhere (a caller's input, a model parameter).
// So a forward pass needs only to Ref its inputs into a fresh scope: every tensor the
// pass makes from them is freed when the scope closes. Nested scopes (Child) free a
// loop step's temporaries each iteration while the outer scope keeps what lives longer.
//
// A Scope may be used from several goroutines, but the intended use is one scope per
// goroutine's unit of work.
type Scope struct {
	mu     sync.Mutex
	parent *Scope
	depth  int
	live   map[*Tensor]struct{}
	err    error
	closed bool
	state  *scopeState
}

// scopeState holds the raw handles for the GC safety net. It must not reach the Scope
// or its Tensors, or the cleanup would keep the scope alive forever.
type scopeState struct {
	mu      sync.Mutex
	handles map[C.ct_tensor]struct{}
}

// NewScope opens a top-level scope.
func NewScope() *Scope { return newScope(nil) }

// Child opens a scope nested in s: results mixing tensors of both land in the child.
func (s *Scope) Child() *Scope { return newScope(s) }

func newScope(parent *Scope) *Scope {
	s := &Scope{parent: parent, live: map[*Tensor]struct{}{}}
	if parent != nil {
		s.depth = parent.depth + 1
	}
	st := &scopeState{handles: map[C.ct_tensor]struct{}{}}
	s.state = st
	runtime.AddCleanup(s, func(st *scopeState) {
		st.mu.Lock()
		defer st.mu.Unlock()
		for h := range st.handles {
			freeHandle(h)
		}
		st.handles = nil
	}, st)
	return s
}

func (s *Scope) add(t *Tensor) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.live[t] = struct{}{}
	s.state.mu.Lock()
	s.state.handles[t.h] = struct{}{}
	s.state.mu.Unlock()
	t.scope = s
	return true
}

func (s *Scope) remove(t *Tensor) {
	s.mu.Lock()
	delete(s.live, t)
	s.state.mu.Lock()
	delete(s.state.handles, t.h)
	s.state.mu.Unlock()
	s.mu.Unlock()
	t.scope = nil
}

func (s *Scope) noteErr(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
}

// Err returns the first error of any op whose result would have joined s.
func (s *Scope) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Len is the number of live tensors the scope owns.
func (s *Scope) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.live)
}

// Scope returns the scope that owns t, or nil.
func (t *Tensor) Scope() *Scope {
	if t == nil {
		return nil
	}
	return t.scope
}

// Track makes s the owner of t (taking it from any other scope) and returns t. On a nil
// scope it returns t unchanged, so model code can write x.Scope().Track(mask).
func (s *Scope) Track(t *Tensor) *Tensor {
	if s == nil {
		return t
	}
	if t.check() != nil {
		if t.err != nil {
			s.noteErr(t.err)
		}
		return t
	}
	if t.scope == s {
		return t
	}
	if t.scope != nil {
		t.scope.remove(t)
	}
	t.unmanage()
	if !s.add(t) {
		t.manage()
	}
	return t
}

// Ref returns a new handle on t's data, owned by s; t itself is untouched. On a nil
// scope it returns t itself: x.Scope().Ref(param) brings a parameter into x's scope,
// whatever x's scope is, so that ops on the parameter alone are freed with it.
func (s *Scope) Ref(t *Tensor) *Tensor {
	if s == nil {
		return t
	}
	if err := t.check(); err != nil {
		return errTensor(err)
	}
	var h C.ct_tensor
	if err := takeError("ref", C.ct_shallow_copy(t.h, &h)); err != nil {
		s.noteErr(err)
		return errTensor(err)
	}
	return newTensor(h, s)
}

// Keep hands t from s to s's parent (or, for a top-level scope, to the caller, who
// must Free it or leave it to the GC safety net) and returns t.
func (s *Scope) Keep(t *Tensor) *Tensor {
	if t.check() != nil {
		return t
	}
	if t.scope != nil && t.scope != s {
		// Owned by another scope: keeping it here has nothing to do.
		return t
	}
	if t.scope == s {
		s.remove(t)
	}
	if s.parent != nil && s.parent.add(t) {
		return t
	}
	t.manage()
	return t
}

// Close frees every tensor s still owns. Closing twice is a no-op.
func (s *Scope) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	live := s.live
	s.live = map[*Tensor]struct{}{}
	s.state.mu.Lock()
	s.state.handles = map[C.ct_tensor]struct{}{}
	s.state.mu.Unlock()
	s.mu.Unlock()
	for t := range live {
		if t.h != nil {
			freeHandle(t.h)
			t.h = nil
			t.err = ErrFreed
		}
		t.scope = nil
	}
}

// deepestScope picks the scope a result joins: the deepest open one among the operands.
func deepestScope(ts ...*Tensor) *Scope {
	var best *Scope
	for _, t := range ts {
		if t == nil || t.scope == nil {
			continue
		}
		if best == nil || t.scope.depth > best.depth {
			best = t.scope
		}
	}
	return best
}
