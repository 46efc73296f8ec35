package torch

// #include "capfilt_torch.h"
import "C"

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// HostMemory is the process's resident memory as the kernel counts it, in bytes.
type HostMemory struct {
	RSS  int64 // resident now (VmRSS)
	Peak int64 // high-water mark since the start or the last ResetHostPeak (VmHWM)
}

// ReadHostMemory reads VmRSS and VmHWM from /proc/self/status.
func ReadHostMemory() (HostMemory, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return HostMemory{}, err
	}
	var m HostMemory
	found := 0
	for _, line := range strings.Split(string(b), "\n") {
		var dst *int64
		switch {
		case strings.HasPrefix(line, "VmRSS:"):
			dst = &m.RSS
		case strings.HasPrefix(line, "VmHWM:"):
			dst = &m.Peak
		default:
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			return HostMemory{}, fmt.Errorf("/proc/self/status: malformed line %q", line)
		}
		kb, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			return HostMemory{}, fmt.Errorf("/proc/self/status: %q: %w", line, err)
		}
		*dst = kb * 1024
		found++
	}
	if found != 2 {
		return HostMemory{}, fmt.Errorf("/proc/self/status has no VmRSS or VmHWM")
	}
	return m, nil
}

// ResetHostPeak sets the high-water mark back to the current resident size (Linux ≥ 4.0),
// so that a measurement's peak excludes what came before it (loading, weight init).
func ResetHostPeak() error {
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
}

// HostAllocator describes how the shim set up host memory when the library loaded.
type HostAllocator struct {
	// MallocArenas is the limit on glibc malloc arenas the shim set (0: left to glibc,
	// because MALLOC_ARENA_MAX was set by the user).
	MallocArenas int
	// BufferCache reports whether tensor buffers of 1 MiB and more are kept for reuse
	// (libtorch 1.x builds, on unless SetBufferCache(false)), and its counters.
	BufferCache      bool
	BufferCacheStats BufferCacheStats
}

// BufferCacheStats are the large-buffer cache's counters, in bytes and buffers.
type BufferCacheStats struct {
	Live, Kept, PeakLive int64 // bytes in tensors now, kept for reuse, most in tensors at once
	Hits, Misses         int64 // buffers served from the cache, and freshly mapped
}

// SetBufferCache turns the large-buffer cache on or off (for measurements: it is on by
// default where the build has it). It reports false when asked on and the build has none.
func SetBufferCache(on bool) bool { return C.ct_set_buffer_cache(cBool(on)) != 0 }

// HostAllocatorInfo reports the host-memory settings the shim applied at load time.
func HostAllocatorInfo() HostAllocator {
	a := HostAllocator{MallocArenas: int(C.ct_malloc_arenas())}
	var live, kept, peak, hits, misses C.int64_t
	if C.ct_buffer_cache_stats(&live, &kept, &peak, &hits, &misses) != 0 {
		a.BufferCache = true
		a.BufferCacheStats = BufferCacheStats{Live: int64(live), Kept: int64(kept), PeakLive: int64(peak), Hits: int64(hits), Misses: int64(misses)}
	}
	return a
}

// ScopeOf is the scope an op on ts would put its result in: the deepest open one among
// them (nil if none is scoped). A function that opens a scope for its own temporaries
// makes it a Child of this one, so that what it Keeps lands where an op would have.
func ScopeOf(ts ...*Tensor) *Scope { return deepestScope(ts...) }

// ReleaseHostMemory unmaps the buffers the cache keeps and hands the malloc heap's free
// pages back to the OS (malloc_trim), and reports whether the heap had any. Between measurements it makes the resident size that of
// the live tensors; in a long run it is never needed for correctness.
func ReleaseHostMemory() bool { return C.ct_release_host_memory() != 0 }

// SetBulkThreads sets libtorch's threads for ops over at least 2^18 elements (the big
// elementwise ops, softmax and LayerNorm of an encoder pass; matmuls are OpenBLAS's);
// smaller ops keep NumThreads. n ≤ 1 turns the class off. By default every CPU, unless
// OMP_NUM_THREADS is set; SetNumThreads sets it too.
func SetBulkThreads(n int) { C.ct_set_bulk_threads(C.int(n)) }

// BulkThreads is the thread count of ops over at least 2^18 elements (0 or 1: no such class).
func BulkThreads() int { return int(C.ct_get_bulk_threads()) }
