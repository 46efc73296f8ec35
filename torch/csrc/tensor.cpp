// Tensor lifetime, creation, devices and library information.
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <ATen/Version.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <memory>

#include "shim.h"

namespace ct {

static std::atomic<int> g_threads{0};   // 0: libtorch's default
static std::atomic<int> g_threads_gen{0};
static thread_local int t_threads_gen = 0;

void sync_threads() {
  int gen = g_threads_gen.load(std::memory_order_relaxed);
  if (gen != t_threads_gen) {
    t_threads_gen = gen;
    int n = g_threads.load();
    if (n > 0) at::set_num_threads(n);
  }
}

at::ScalarType scalar_type(int dtype) {
  switch (dtype) {
    case CT_F32: return at::kFloat;
    case CT_F64: return at::kDouble;
    case CT_F16: return at::kHalf;
    case CT_BF16: return at::kBFloat16;
    case CT_I64: return at::kLong;
    case CT_I32: return at::kInt;
    case CT_I16: return at::kShort;
    case CT_I8: return at::kChar;
    case CT_U8: return at::kByte;
    case CT_BOOL: return at::kBool;
  }
  throw std::invalid_argument("unknown dtype code " + std::to_string(dtype));
}

int dtype_code(at::ScalarType st) {
  switch (st) {
    case at::kFloat: return CT_F32;
    case at::kDouble: return CT_F64;
    case at::kHalf: return CT_F16;
    case at::kBFloat16: return CT_BF16;
    case at::kLong: return CT_I64;
    case at::kInt: return CT_I32;
    case at::kShort: return CT_I16;
    case at::kChar: return CT_I8;
    case at::kByte: return CT_U8;
    case at::kBool: return CT_BOOL;
    default: return -1;
  }
}

at::Device device(ct_device d) {
  if (d.type == 0) return at::Device(at::kCPU);
  if (d.type == 1) return at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(d.index < 0 ? 0 : d.index));
  throw std::invalid_argument("unknown device type " + std::to_string(d.type));
}

}  // namespace ct

// A read-only file mapped MAP_PRIVATE|PROT_WRITE: tensors viewing it may be written
// (training a loaded model) without touching the file, and untouched pages stay shared
// with the page cache, so loading a checkpoint costs no copy.
struct ct_mapping_s {
  std::shared_ptr<void> base;
  int64_t size;
};

extern "C" {

void ct_error_free(ct_error e) {
  if (!e) return;
  std::free(e->msg);
  std::free(e);
}

const char *ct_torch_version(void) { return TORCH_VERSION; }

ct_error ct_config(char **out) { CT_TRY(*out = ct::dup(at::show_config())) }

ct_error ct_parallel_info(char **out) { CT_TRY(*out = ct::dup(at::get_parallel_info())) }

ct_error ct_blas_info(char **lib, char **core, char **config) {
  CT_TRY({
    std::string l, c, cfg;
    // Whichever library provides sgemm_ is the BLAS libtorch calls.
    if (void *sym = dlsym(RTLD_DEFAULT, "sgemm_")) {
      Dl_info info;
      if (dladdr(sym, &info) && info.dli_fname) {
        char resolved[4096];
        l = realpath(info.dli_fname, resolved) ? resolved : info.dli_fname;
      }
    }
    using str_fn = char *(*)();
    if (auto f = reinterpret_cast<str_fn>(dlsym(RTLD_DEFAULT, "openblas_get_corename"))) c = f();
    if (auto f = reinterpret_cast<str_fn>(dlsym(RTLD_DEFAULT, "openblas_get_config"))) cfg = f();
    *lib = ct::dup(l);
    *core = ct::dup(c);
    *config = ct::dup(cfg);
  })
}

void ct_set_num_threads(int n) {
  if (n <= 0) return;
  ct::g_threads.store(n);
  ct::g_threads_gen.fetch_add(1);
  ct::sync_threads();
  // OpenBLAS keeps its own pool; without this it would still use every core.
  using set_fn = void (*)(int);
  if (auto f = reinterpret_cast<set_fn>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) f(n);
}

void ct_set_blas_threads(int n) {
  if (n <= 0) return;
  using set_fn = void (*)(int);
  if (auto f = reinterpret_cast<set_fn>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) f(n);
}

int ct_get_blas_threads(void) {
  using get_fn = int (*)();
  if (auto f = reinterpret_cast<get_fn>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"))) return f();
  return 0;
}

int ct_get_num_threads(void) {
  ct::sync_threads();
  return at::get_num_threads();
}

void ct_manual_seed(uint64_t seed) { at::manual_seed(seed); }

int ct_grad_enabled(void) { return at::GradMode::is_enabled() ? 1 : 0; }
void ct_set_grad_enabled(int enabled) { at::GradMode::set_enabled(enabled != 0); }

void ct_free(ct_tensor t) { delete t; }

ct_error ct_shallow_copy(ct_tensor t, ct_tensor *out) { CT_TRY(*out = ct::wrap(ct::T(t))) }

int ct_dim(ct_tensor t) { return static_cast<int>(t->t.dim()); }

void ct_shape(ct_tensor t, int64_t *dims) {
  auto s = t->t.sizes();
  for (size_t i = 0; i < s.size(); i++) dims[i] = s[i];
}

int ct_dtype_of(ct_tensor t) { return ct::dtype_code(t->t.scalar_type()); }

ct_device ct_device_of(ct_tensor t) {
  auto d = t->t.device();
  ct_device r;
  r.type = d.is_cuda() ? 1 : 0;
  r.index = d.has_index() ? d.index() : -1;
  return r;
}

int64_t ct_numel(ct_tensor t) { return t->t.numel(); }
int ct_requires_grad(ct_tensor t) { return t->t.requires_grad() ? 1 : 0; }
int ct_defined(ct_tensor t) { return t->t.defined() ? 1 : 0; }

ct_error ct_from_data(const void *data, int dtype, const int64_t *shape, int ndim, ct_tensor *out) {
  CT_TRY({
    auto t = at::empty(ct::dims(shape, ndim), at::TensorOptions().dtype(ct::scalar_type(dtype)));
    if (t.numel() > 0) std::memcpy(t.data_ptr(), data, t.numel() * t.element_size());
    *out = ct::wrap(std::move(t));
  })
}

ct_error ct_copy_to(ct_tensor h, void *data, int64_t nbytes) {
  CT_TRY({
    auto t = ct::T(h).detach().to(at::kCPU).contiguous();
    int64_t want = t.numel() * static_cast<int64_t>(t.element_size());
    if (want != nbytes)
      throw std::invalid_argument("copy_to: tensor holds " + std::to_string(want) +
                                  " bytes, destination " + std::to_string(nbytes));
    if (want > 0) std::memcpy(data, t.data_ptr(), want);
  })
}

ct_error ct_full(const int64_t *shape, int ndim, double value, int dtype, ct_device dev, ct_tensor *out) {
  CT_TRY(*out = ct::wrap(at::full(ct::dims(shape, ndim), value,
                                  at::TensorOptions().dtype(ct::scalar_type(dtype)).device(ct::device(dev)))))
}

ct_error ct_arange(double start, double end, double step, int dtype, ct_device dev, ct_tensor *out) {
  CT_TRY(*out = ct::wrap(at::arange(start, end, step,
                                    at::TensorOptions().dtype(ct::scalar_type(dtype)).device(ct::device(dev)))))
}

ct_generator ct_generator_new(uint64_t seed) {
  return new ct_generator_s{at::make_generator<at::CPUGeneratorImpl>(seed)};
}

void ct_generator_free(ct_generator g) { delete g; }

ct_error ct_random(ct_generator g, int kind, const int64_t *shape, int ndim, int dtype, ct_device dev,
                   ct_tensor *out) {
  CT_TRY({
    // Drawn on the CPU generator and moved: the same seed gives the same numbers on any device.
    auto opts = at::TensorOptions().dtype(at::kFloat);
    c10::optional<at::Generator> gen;
    if (g) gen = g->g;
    at::Tensor t = kind == 0 ? at::randn(ct::dims(shape, ndim), gen, opts) : at::rand(ct::dims(shape, ndim), gen, opts);
    *out = ct::wrap(t.to(ct::device(dev), ct::scalar_type(dtype)));
  })
}

ct_error ct_to(ct_tensor t, ct_device dev, int dtype, ct_tensor *out) {
  CT_TRY(*out = ct::wrap(ct::T(t).to(ct::device(dev), ct::scalar_type(dtype))))
}

ct_error ct_mapping_open(const char *path, ct_mapping *out) {
  CT_TRY({
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw std::runtime_error(std::string("open ") + path + ": " + std::strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
      int err = errno;
      close(fd);
      throw std::runtime_error(std::string("stat ") + path + ": " + std::strerror(err));
    }
    int64_t size = st.st_size;
    void *p = nullptr;
    if (size > 0) {
      p = mmap(nullptr, static_cast<size_t>(size), PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
      if (p == MAP_FAILED) {
        int err = errno;
        close(fd);
        throw std::runtime_error(std::string("mmap ") + path + ": " + std::strerror(err));
      }
    }
    close(fd);
    auto m = new ct_mapping_s;
    m->size = size;
    m->base = std::shared_ptr<void>(p, [size](void *q) {
      if (q) munmap(q, static_cast<size_t>(size));
    });
    *out = m;
  })
}

void ct_mapping_release(ct_mapping m) { delete m; }

int64_t ct_mapping_size(ct_mapping m) { return m->size; }

ct_error ct_mapping_tensor(ct_mapping m, int64_t offset, int dtype, const int64_t *shape,
                           const int64_t *strides, int ndim, ct_tensor *out) {
  CT_TRY({
    auto st = ct::scalar_type(dtype);
    int64_t elem = static_cast<int64_t>(c10::elementSize(st));
    // The furthest element the view can reach must lie inside the file.
    int64_t last = 0;
    std::vector<int64_t> contiguous(static_cast<size_t>(ndim));
    int64_t acc = 1;
    for (int i = ndim - 1; i >= 0; i--) {
      contiguous[i] = acc;
      acc *= shape[i];
    }
    const int64_t *str = strides ? strides : contiguous.data();
    bool empty = false;
    for (int i = 0; i < ndim; i++) {
      if (shape[i] < 0 || str[i] < 0) throw std::invalid_argument("negative shape or stride");
      if (shape[i] == 0) empty = true;
      else last += (shape[i] - 1) * str[i];
    }
    if (offset < 0 || offset % elem != 0)
      throw std::invalid_argument("offset " + std::to_string(offset) + " is not aligned to " +
                                  std::to_string(elem) + " bytes");
    if (!empty && offset + (last + 1) * elem > m->size)
      throw std::invalid_argument("tensor at offset " + std::to_string(offset) + " runs past the end of the file (" +
                                  std::to_string(m->size) + " bytes)");
    auto keep = m->base;
    char *p = static_cast<char *>(keep.get()) + (empty ? 0 : offset);
    auto t = at::from_blob(p, ct::dims(shape, ndim), ct::dims(str, ndim), [keep](void *) mutable { keep.reset(); },
                           at::TensorOptions().dtype(st));
    *out = ct::wrap(std::move(t));
  })
}

ct_error ct_bench_matmul(int64_t n, int iters, double *seconds) {
  CT_TRY({
    auto a = at::randn({n, n});
    auto b = at::randn({n, n});
    auto c = at::matmul(a, b);  // warm-up
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < iters; i++) c = at::matmul(a, b);
    auto t1 = std::chrono::steady_clock::now();
    *seconds = std::chrono::duration<double>(t1 - t0).count();
  })
}

}  // extern "C"
