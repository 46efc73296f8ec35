// Internal helpers shared by the shim's translation units.
#pragma once

#include <ATen/ATen.h>
#include <torch/version.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "capfilt_torch.h"

namespace ct {
// Live tensor handles, for leak checks (ct_live_tensors).
extern std::atomic<int64_t> live_handles;
}  // namespace ct

struct ct_tensor_s {
  at::Tensor t;
  explicit ct_tensor_s(at::Tensor x) : t(std::move(x)) { ct::live_handles.fetch_add(1, std::memory_order_relaxed); }
  ~ct_tensor_s() { ct::live_handles.fetch_sub(1, std::memory_order_relaxed); }
  ct_tensor_s(const ct_tensor_s &) = delete;
  ct_tensor_s &operator=(const ct_tensor_s &) = delete;
};

struct ct_generator_s {
  at::Generator g;
};

namespace ct {

inline char *dup(const std::string &s) {
  char *p = static_cast<char *>(std::malloc(s.size() + 1));
  std::memcpy(p, s.data(), s.size() + 1);
  return p;
}

inline ct_error make_error(int code, const std::string &msg) {
  auto *e = static_cast<ct_error_s *>(std::malloc(sizeof(ct_error_s)));
  e->code = code;
  e->msg = dup(msg);
  return e;
}

// Applies the thread count chosen by ct_set_num_threads on whatever OS thread the
// Go runtime happens to call us from (libtorch keeps it per thread under OpenMP).
void sync_threads();

// BulkThreads gives one op libtorch's bulk thread count (ct_set_bulk_threads) for its
// duration when it touches at least kBulkElements elements (memory.cpp says why).
constexpr int64_t kBulkElements = int64_t(1) << 18;
class BulkThreads {
 public:
  explicit BulkThreads(int64_t elements);
  ~BulkThreads();
  BulkThreads(const BulkThreads &) = delete;
  BulkThreads &operator=(const BulkThreads &) = delete;

 private:
  int restore_ = 0;
};

inline ct_tensor wrap(at::Tensor t) { return new ct_tensor_s(std::move(t)); }
inline const at::Tensor &T(ct_tensor h) { return h->t; }

at::ScalarType scalar_type(int dtype);
int dtype_code(at::ScalarType st);
at::Device device(ct_device d);

inline at::IntArrayRef dims(const int64_t *p, int n) { return at::IntArrayRef(p, static_cast<size_t>(n)); }

}  // namespace ct

// CT_TRY turns every exception into a ct_error: libtorch's own errors keep their message
// without the C++ backtrace, out-of-memory is told apart so Go can split a batch.
#define CT_TRY(...)                                                                    \
  try {                                                                                \
    ct::sync_threads();                                                                \
    __VA_ARGS__;                                                                         \
    return nullptr;                                                                    \
  } catch (const c10::OutOfMemoryError &e) {                                           \
    return ct::make_error(CT_ERR_OOM, e.what_without_backtrace());                     \
  } catch (const c10::Error &e) {                                                      \
    return ct::make_error(CT_ERR_TORCH, e.what_without_backtrace());                   \
  } catch (const std::bad_alloc &e) {                                                  \
    return ct::make_error(CT_ERR_OOM, std::string("host out of memory: ") + e.what()); \
  } catch (const std::exception &e) {                                                  \
    return ct::make_error(CT_ERR_TORCH, e.what());                                     \
  } catch (...) {                                                                      \
    return ct::make_error(CT_ERR_TORCH, "unknown C++ exception");                      \
  }
