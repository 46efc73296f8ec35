package torch

// #include <stdlib.h>
// #include "capfilt_torch.h"
import "C"

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"unsafe"
)

// By default matmuls use every CPU (OpenBLAS's own pool) and libtorch's other ops run on
// the calling thread: its OpenMP pool spins between ops, and on a few cores shared with
// the Go runtime (decoding, I/O) and other processes that spinning costs more than the
// parallel elementwise ops gain (measured in BenchmarkThreads). Ops over many elements
// (SetBulkThreads, memory.go) are the exception: they use every CPU too. OMP_NUM_THREADS
// or SetNumThreads choose otherwise.
func init() {
	if os.Getenv("OMP_NUM_THREADS") == "" {
		C.ct_set_num_threads(1)
		C.ct_set_blas_threads(C.int(runtime.NumCPU()))
		C.ct_set_bulk_threads(C.int(runtime.NumCPU()))
	}
}

// Version is the version of the libtorch the shim was built against, e.g. "1.13.0".
func Version() string { return C.GoString(C.ct_torch_version()) }

func takeString(p *C.char) string {
	s := C.GoString(p)
	C.free(unsafe.Pointer(p))
	return s
}

// BuildConfig is libtorch's own description of its build (at::show_config).
func BuildConfig() (string, error) {
	var p *C.char
	if err := takeError("show_config", C.ct_config(&p)); err != nil {
		return "", err
	}
	return takeString(p), nil
}

// ParallelInfo is libtorch's description of its thread pools (at::get_parallel_info).
func ParallelInfo() (string, error) {
	var p *C.char
	if err := takeError("parallel_info", C.ct_parallel_info(&p)); err != nil {
		return "", err
	}
	return takeString(p), nil
}

// BLAS describes the BLAS library libtorch's matmuls end up in.
type BLAS struct {
	Library string `json:"library"` // resolved path of the library providing sgemm_
	Core    string `json:"core"`    // OpenBLAS's kernel ("Prescott", "SkylakeX", ...), empty if not OpenBLAS
	Config  string `json:"config"`  // OpenBLAS's build configuration
}

// IsOpenBLAS reports whether the BLAS in use is OpenBLAS.
func (b BLAS) IsOpenBLAS() bool {
	return b.Core != "" || strings.Contains(strings.ToLower(b.Library), "openblas")
}

func (b BLAS) String() string {
	switch {
	case b.IsOpenBLAS():
		return fmt.Sprintf("OpenBLAS (%s kernel; %s; %s)", b.Core, strings.TrimSpace(b.Config), b.Library)
	case b.Library != "":
		return "unknown BLAS at " + b.Library + " (not OpenBLAS: matmuls will be slow)"
	}
	return "no BLAS symbol found (matmuls use libtorch's fallback)"
}

// BLASInfo finds the BLAS in use.
func BLASInfo() (BLAS, error) {
	var lib, core, cfg *C.char
	if err := takeError("blas_info", C.ct_blas_info(&lib, &core, &cfg)); err != nil {
		return BLAS{}, err
	}
	b := BLAS{Library: takeString(lib), Core: takeString(core), Config: takeString(cfg)}
	if b.Library != "" {
		b.Library = filepath.Clean(b.Library)
	}
	return b, nil
}

// SetNumThreads sets the threads libtorch and OpenBLAS use for one op (n > 0), whatever
// its size.
func SetNumThreads(n int) {
	C.ct_set_num_threads(C.int(n))
	C.ct_set_bulk_threads(C.int(n))
}

// NumThreads is the thread count libtorch uses for one op.
func NumThreads() int { return int(C.ct_get_num_threads()) }

// SetIntraOpThreads sets libtorch's own intra-op threads alone (OpenMP), leaving OpenBLAS's.
func SetIntraOpThreads(n int) {
	blas := BLASThreads()
	C.ct_set_num_threads(C.int(n))
	if blas > 0 {
		C.ct_set_blas_threads(C.int(blas))
	}
}

// SetBLASThreads sets OpenBLAS's threads alone (matmuls).
func SetBLASThreads(n int) { C.ct_set_blas_threads(C.int(n)) }

// BLASThreads is OpenBLAS's thread count (0 if the BLAS is not OpenBLAS).
func BLASThreads() int { return int(C.ct_get_blas_threads()) }

// ManualSeed seeds libtorch's global generator (dropout, and Randn with a nil generator).
func ManualSeed(seed uint64) { C.ct_manual_seed(C.uint64_t(seed)) }

// CUDACompiled reports whether the shim was built against a CUDA libtorch.
func CUDACompiled() bool { return C.ct_cuda_compiled() != 0 }

// CUDAAvailable reports whether a CUDA device can be used.
func CUDAAvailable() bool { return C.ct_cuda_is_available() != 0 }

// CUDADeviceCount is the number of visible CUDA devices.
func CUDADeviceCount() int { return int(C.ct_cuda_device_count()) }

// CUDASynchronize waits for all work queued on device i.
func CUDASynchronize(i int) error {
	return takeError("cuda synchronize", C.ct_cuda_synchronize(C.int(i)))
}

// CUDADeviceName is device i's product name.
func CUDADeviceName(i int) (string, error) {
	var p *C.char
	if err := takeError("cuda device name", C.ct_cuda_device_name(C.int(i), &p)); err != nil {
		return "", err
	}
	return takeString(p), nil
}

// CUDAMemory is one device's memory, in bytes.
type CUDAMemory struct {
	Total, Free                        int64 // as the driver sees it
	Allocated, Reserved, PeakAllocated int64 // libtorch's caching allocator
}

// CUDAMemoryStats reads device i's memory figures.
func CUDAMemoryStats(i int) (CUDAMemory, error) {
	var m CUDAMemory
	var t, f, a, r, p C.int64_t
	if err := takeError("cuda memory", C.ct_cuda_memory(C.int(i), &t, &f, &a, &r, &p)); err != nil {
		return m, err
	}
	return CUDAMemory{Total: int64(t), Free: int64(f), Allocated: int64(a), Reserved: int64(r), PeakAllocated: int64(p)}, nil
}

// CUDAEmptyCache returns cached, unused device memory to the driver.
func CUDAEmptyCache() error { return takeError("cuda empty_cache", C.ct_cuda_empty_cache()) }

// BenchMatmul times iters n×n float32 matmuls inside C++ (no Go in the loop) and returns
// the seconds they took: the yardstick for the binding's own overhead.
func BenchMatmul(n int64, iters int) (float64, error) {
	var s C.double
	if err := takeError("bench matmul", C.ct_bench_matmul(C.int64_t(n), C.int(iters), &s)); err != nil {
		return 0, err
	}
	return float64(s), nil
}

// ShimPath is the file libcapfilt_torch.so was loaded from ("" if it cannot be told).
func ShimPath() string {
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(maps), "\n") {
		if i := strings.Index(line, "/"); i >= 0 && strings.HasSuffix(line, "libcapfilt_torch.so") {
			return line[i:]
		}
	}
	return ""
}
