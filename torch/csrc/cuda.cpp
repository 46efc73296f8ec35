// CUDA devices. The shim is built with CAPFILT_WITH_CUDA when the libtorch it links
// has CUDA (scripts/build-torch-shim.sh decides); without it every query answers
// "no CUDA" and the Go side behaves the same on every machine.
#include <torch/cuda.h>

#include "shim.h"

#ifdef CAPFILT_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_runtime_api.h>
#endif

extern "C" {

int ct_cuda_compiled(void) {
#ifdef CAPFILT_WITH_CUDA
  return 1;
#else
  return 0;
#endif
}

int ct_cuda_is_available(void) {
  try {
    return torch::cuda::is_available() ? 1 : 0;
  } catch (...) {
    return 0;
  }
}

int ct_cuda_device_count(void) {
  try {
    return static_cast<int>(torch::cuda::device_count());
  } catch (...) {
    return 0;
  }
}

#ifdef CAPFILT_WITH_CUDA
static void check_device(int device) {
  if (device < 0 || device >= static_cast<int>(torch::cuda::device_count()))
    throw std::invalid_argument("no CUDA device " + std::to_string(device));
}
#endif

ct_error ct_cuda_synchronize(int device) {
  CT_TRY({
#ifdef CAPFILT_WITH_CUDA
    check_device(device);
    torch::cuda::synchronize(device);
#else
    throw std::invalid_argument("this libcapfilt_torch was built without CUDA");
#endif
  })
}

ct_error ct_cuda_device_name(int device, char **name) {
  CT_TRY({
#ifdef CAPFILT_WITH_CUDA
    check_device(device);
    *name = ct::dup(at::cuda::getDeviceProperties(device)->name);
#else
    (void)device;
    (void)name;
    throw std::invalid_argument("this libcapfilt_torch was built without CUDA");
#endif
  })
}

ct_error ct_cuda_memory(int device, int64_t *total, int64_t *free_, int64_t *allocated, int64_t *reserved,
                        int64_t *peak_allocated) {
  CT_TRY({
#ifdef CAPFILT_WITH_CUDA
    check_device(device);
    c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device));
    size_t f = 0, t = 0;
    if (cudaMemGetInfo(&f, &t) != cudaSuccess) throw std::runtime_error("cudaMemGetInfo failed");
    *total = static_cast<int64_t>(t);
    *free_ = static_cast<int64_t>(f);
    // Index 0 is the aggregate over pool kinds in every libtorch version we support.
    auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device);
    *allocated = stats.allocated_bytes[0].current;
    *reserved = stats.reserved_bytes[0].current;
    *peak_allocated = stats.allocated_bytes[0].peak;
#else
    (void)device;
    (void)total;
    (void)free_;
    (void)allocated;
    (void)reserved;
    (void)peak_allocated;
    throw std::invalid_argument("this libcapfilt_torch was built without CUDA");
#endif
  })
}

ct_error ct_cuda_empty_cache(void) {
  CT_TRY({
#ifdef CAPFILT_WITH_CUDA
    c10::cuda::CUDACachingAllocator::emptyCache();
#endif
  })
}

}  // extern "C"
