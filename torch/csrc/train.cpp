// What training needs beyond the forward ops: random-number state for bit-identical
// resume, in-place updates outside autograd (temperature clamp, momentum EMA), gradient
// handles and the padding-aware embedding.
#include <ATen/Context.h>
#include <ATen/core/Generator.h>

#include "shim.h"

using ct::T;
using ct::wrap;

std::atomic<int64_t> ct::live_handles{0};

namespace {

at::Generator generator_of(ct_generator g, ct_device dev) {
  if (g) return g->g;
  return at::globalContext().defaultGenerator(ct::device(dev));
}

}  // namespace

extern "C" {

int64_t ct_live_tensors(void) { return ct::live_handles.load(); }

ct_error ct_generator_get_state(ct_generator g, ct_device dev, uint8_t **out, int64_t *n) {
  CT_TRY({
    at::Generator gen = generator_of(g, dev);
    at::Tensor st;
    {
      std::lock_guard<std::mutex> lock(gen.mutex());
      st = gen.get_state();
    }
    st = st.contiguous().to(at::kCPU);
    int64_t bytes = st.numel() * static_cast<int64_t>(st.element_size());
    auto *p = static_cast<uint8_t *>(std::malloc(bytes > 0 ? bytes : 1));
    if (!p) throw std::bad_alloc();
    if (bytes > 0) std::memcpy(p, st.data_ptr(), bytes);
    *out = p;
    *n = bytes;
  })
}

ct_error ct_generator_set_state(ct_generator g, ct_device dev, const uint8_t *data, int64_t n) {
  CT_TRY({
    at::Generator gen = generator_of(g, dev);
    auto st = at::empty({n}, at::TensorOptions().dtype(at::kByte));
    if (n > 0) std::memcpy(st.data_ptr(), data, n);
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(st);
  })
}

ct_error ct_clamp_(ct_tensor t, double lo, double hi) {
  CT_TRY({
    at::NoGradGuard guard;
    t->t.clamp_(lo, hi);
  })
}

ct_error ct_detached_clone(ct_tensor t, ct_tensor *out) {
  CT_TRY({
    at::NoGradGuard guard;
    *out = wrap(T(t).detach().clone());
  })
}

ct_error ct_set_grad(ct_tensor t, ct_tensor g) {
  CT_TRY({
    if (g) {
      const auto &src = T(g);
      if (!src.sizes().equals(t->t.sizes()) || src.scalar_type() != t->t.scalar_type() ||
          src.device() != t->t.device())
        throw std::invalid_argument("gradient of shape " + c10::str(src.sizes()) + " " +
                                    std::string(c10::toString(src.scalar_type())) + " for a tensor of shape " +
                                    c10::str(t->t.sizes()) + " " + std::string(c10::toString(t->t.scalar_type())));
      t->t.mutable_grad() = src;
    } else {
      t->t.mutable_grad() = at::Tensor();
    }
  })
}

ct_error ct_embedding_padded(ct_tensor weight, ct_tensor ids, int64_t padding_idx, ct_tensor *out) {
  CT_TRY(*out = wrap(at::embedding(T(weight), T(ids), padding_idx)))
}

ct_error ct_ema_(const ct_tensor *dst, const ct_tensor *src, int n, double m) {
  CT_TRY({
    at::NoGradGuard guard;
    for (int i = 0; i < n; i++) {
      const auto &s = T(src[i]);
      auto &d = dst[i]->t;
      if (!s.sizes().equals(d.sizes()) || s.scalar_type() != d.scalar_type())
        throw std::invalid_argument("ema pair " + std::to_string(i) + ": " + c10::str(d.sizes()) + " vs " +
                                    c10::str(s.sizes()));
    }
    for (int i = 0; i < n; i++) dst[i]->t.mul_(m).add_(T(src[i]), 1.0 - m);
  })
}

}  // extern "C"
