// Elementwise, shape, reduction and neural-network ops.
#include <algorithm>
#include <cmath>

#include "shim.h"

using ct::T;
using ct::wrap;

namespace {

std::vector<at::Tensor> tensors(const ct_tensor *ts, int n) {
  std::vector<at::Tensor> v;
  v.reserve(static_cast<size_t>(n));
  for (int i = 0; i < n; i++) v.push_back(T(ts[i]));
  return v;
}

void put_list(const std::vector<at::Tensor> &parts, ct_tensor *outs, int cap, int *n) {
  if (static_cast<int>(parts.size()) > cap)
    throw std::invalid_argument("split gives " + std::to_string(parts.size()) + " pieces, room for " +
                                std::to_string(cap));
  for (size_t i = 0; i < parts.size(); i++) outs[i] = wrap(parts[i]);
  *n = static_cast<int>(parts.size());
}

// The attention every libtorch version can run: softmax(q·kᵀ/√d + mask)·v.
at::Tensor explicit_attention(const at::Tensor &q, const at::Tensor &k, const at::Tensor &v,
                              const c10::optional<at::Tensor> &mask, bool causal, double dropout_p) {
  // Scaling q rather than the scores touches L·d values instead of L·S; for a power-of-two
  // scale (head size 64: 1/8) the result is bit for bit the same.
  double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  c10::optional<at::Tensor> keep;
  if (causal) keep = at::ones({q.size(-2), k.size(-2)}, q.options().dtype(at::kBool)).tril();
  auto scores_of = [&](const at::Tensor &q, const at::Tensor &k, const c10::optional<at::Tensor> &mask) {
    auto scores = at::matmul(q * scale, k.transpose(-2, -1));
    if (keep) scores.masked_fill_(keep->logical_not(), -std::numeric_limits<double>::infinity());
    if (mask && mask->defined()) {
      if (mask->scalar_type() == at::kBool)
        scores.masked_fill_(mask->logical_not(), -std::numeric_limits<double>::infinity());
      else
        scores.add_(*mask);
    }
    return scores;
  };
  bool grad = at::GradMode::is_enabled() &&
              (q.requires_grad() || k.requires_grad() || v.requires_grad() || (mask && mask->requires_grad()));
  if (grad || dropout_p > 0) {
    auto probs = at::softmax(scores_of(q, k, mask), -1);
    if (dropout_p > 0) probs = at::dropout(probs, dropout_p, true);
    return at::matmul(probs, v);
  }
  // Without autograd the scores are dead once normalised, so softmax runs in place, and
  // large ones are formed a few heads at a time: a ViT-B layer at batch 8 would hold
  // [8, 12, 577, 577] scores (128 MB) at once, a 32 MB chunk gives the same numbers (each
  // head's products and softmax are the same calls on the same values).
  auto one = [&](const at::Tensor &q, const at::Tensor &k, const at::Tensor &v, const c10::optional<at::Tensor> &mask) {
    auto scores = scores_of(q, k, mask);
    at::_softmax_out(scores, scores, -1, false);
    return at::matmul(scores, v);
  };
  constexpr int64_t kChunkBytes = int64_t(32) << 20;
  if (q.dim() < 3 || k.dim() != q.dim() || v.dim() != q.dim() || q.size(-3) != k.size(-3) || q.size(-3) != v.size(-3))
    return one(q, k, v, mask);
  int64_t heads = q.size(-3);
  auto lead = at::infer_size(q.sizes().slice(0, q.dim() - 2), k.sizes().slice(0, k.dim() - 2));
  int64_t per_head = q.size(-2) * k.size(-2) * static_cast<int64_t>(q.element_size());
  for (size_t i = 0; i + 1 < lead.size(); i++) per_head *= lead[i];
  int64_t chunk = std::max<int64_t>(1, kChunkBytes / std::max<int64_t>(per_head, 1));
  if (chunk >= heads) return one(q, k, v, mask);
  bool mask_per_head = mask && mask->defined() && mask->dim() >= 3 && mask->size(-3) == heads && heads > 1;
  std::vector<at::Tensor> parts;
  for (int64_t h = 0; h < heads; h += chunk) {
    int64_t n = std::min(chunk, heads - h);
    c10::optional<at::Tensor> m = mask;
    if (mask_per_head) m = mask->narrow(-3, h, n);
    parts.push_back(one(q.narrow(-3, h, n), k.narrow(-3, h, n), v.narrow(-3, h, n), m));
  }
  return at::cat(parts, -3);
}

}  // namespace

extern "C" {

ct_error ct_unary(int op, ct_tensor ha, ct_tensor *out) {
  CT_TRY({
    const auto &a = T(ha);
    ct::BulkThreads bulk(a.numel());
    at::Tensor r;
    switch (op) {
      case CT_NEG: r = at::neg(a); break;
      case CT_EXP: r = at::exp(a); break;
      case CT_LOG: r = at::log(a); break;
      case CT_SQRT: r = at::sqrt(a); break;
      case CT_RSQRT: r = at::rsqrt(a); break;
      case CT_TANH: r = at::tanh(a); break;
      case CT_SIGMOID: r = at::sigmoid(a); break;
      case CT_RELU: r = at::relu(a); break;
      case CT_GELU_ERF: r = at::gelu(a, "none"); break;
      case CT_GELU_TANH: r = at::gelu(a, "tanh"); break;
      case CT_ABS: r = at::abs(a); break;
      case CT_CONTIGUOUS: r = a.contiguous(); break;
      case CT_CLONE: r = a.clone(); break;
      case CT_DETACH: r = a.detach(); break;
      case CT_LOGICAL_NOT: r = at::logical_not(a); break;
      case CT_ISNAN: r = at::isnan(a); break;
      default: throw std::invalid_argument("unknown unary op " + std::to_string(op));
    }
    *out = wrap(std::move(r));
  })
}

ct_error ct_binary(int op, ct_tensor ha, ct_tensor hb, ct_tensor *out) {
  CT_TRY({
    const auto &a = T(ha);
    const auto &b = T(hb);
    ct::BulkThreads bulk(std::max(a.numel(), b.numel()));
    at::Tensor r;
    switch (op) {
      case CT_ADD: r = at::add(a, b); break;
      case CT_SUB: r = at::sub(a, b); break;
      case CT_MUL: r = at::mul(a, b); break;
      case CT_DIV: r = at::div(a, b); break;
      case CT_POW: r = at::pow(a, b); break;
      case CT_MATMUL: r = at::matmul(a, b); break;
      case CT_BMM: r = at::bmm(a, b); break;
      case CT_MAXIMUM: r = at::maximum(a, b); break;
      case CT_MINIMUM: r = at::minimum(a, b); break;
      case CT_EQ: r = at::eq(a, b); break;
      case CT_NE: r = at::ne(a, b); break;
      case CT_LT: r = at::lt(a, b); break;
      case CT_LE: r = at::le(a, b); break;
      case CT_GT: r = at::gt(a, b); break;
      case CT_GE: r = at::ge(a, b); break;
      case CT_LOGICAL_AND: r = at::logical_and(a, b); break;
      case CT_LOGICAL_OR: r = at::logical_or(a, b); break;
      default: throw std::invalid_argument("unknown binary op " + std::to_string(op));
    }
    *out = wrap(std::move(r));
  })
}

ct_error ct_binary_scalar(int op, ct_tensor ha, double s, int reversed, ct_tensor *out) {
  CT_TRY({
    const auto &a = T(ha);
    ct::BulkThreads bulk(a.numel());
    at::Scalar sc(s);
    at::Tensor r;
    if (reversed) {
      switch (op) {
        case CT_SUB: r = at::rsub(a, sc); break;
        // Not in place: autograd keeps the reciprocal for the backward pass.
        case CT_DIV: r = at::reciprocal(a).mul(sc); break;
        case CT_POW: r = at::pow(sc, a); break;
        default: throw std::invalid_argument("op " + std::to_string(op) + " has no reversed scalar form");
      }
    } else {
      switch (op) {
        case CT_ADD: r = at::add(a, sc); break;
        case CT_SUB: r = at::sub(a, sc); break;
        case CT_MUL: r = at::mul(a, sc); break;
        case CT_DIV: r = at::div(a, sc); break;
        case CT_POW: r = at::pow(a, sc); break;
        case CT_MAXIMUM: r = at::clamp_min(a, sc); break;
        case CT_MINIMUM: r = at::clamp_max(a, sc); break;
        case CT_EQ: r = at::eq(a, sc); break;
        case CT_NE: r = at::ne(a, sc); break;
        case CT_LT: r = at::lt(a, sc); break;
        case CT_LE: r = at::le(a, sc); break;
        case CT_GT: r = at::gt(a, sc); break;
        case CT_GE: r = at::ge(a, sc); break;
        default: throw std::invalid_argument("op " + std::to_string(op) + " has no scalar form");
      }
    }
    *out = wrap(std::move(r));
  })
}

ct_error ct_reshape(ct_tensor a, const int64_t *shape, int ndim, int view_only, ct_tensor *out) {
  CT_TRY(*out = wrap(view_only ? T(a).view(ct::dims(shape, ndim)) : T(a).reshape(ct::dims(shape, ndim))))
}

ct_error ct_permute(ct_tensor a, const int64_t *dims, int ndim, ct_tensor *out) {
  CT_TRY(*out = wrap(T(a).permute(ct::dims(dims, ndim))))
}

ct_error ct_transpose(ct_tensor a, int64_t d0, int64_t d1, ct_tensor *out) {
  CT_TRY(*out = wrap(T(a).transpose(d0, d1)))
}

ct_error ct_expand(ct_tensor a, const int64_t *shape, int ndim, ct_tensor *out) {
  CT_TRY(*out = wrap(T(a).expand(ct::dims(shape, ndim))))
}

ct_error ct_repeat(ct_tensor a, const int64_t *reps, int ndim, ct_tensor *out) {
  CT_TRY(*out = wrap(T(a).repeat(ct::dims(reps, ndim))))
}

ct_error ct_unsqueeze(ct_tensor a, int64_t dim, ct_tensor *out) { CT_TRY(*out = wrap(T(a).unsqueeze(dim))) }

ct_error ct_squeeze(ct_tensor a, int64_t dim, ct_tensor *out) { CT_TRY(*out = wrap(T(a).squeeze(dim))) }

ct_error ct_flip(ct_tensor a, const int64_t *dims, int ndim, ct_tensor *out) {
  CT_TRY(*out = wrap(T(a).flip(ct::dims(dims, ndim))))
}

ct_error ct_narrow(ct_tensor a, int64_t dim, int64_t start, int64_t length, ct_tensor *out) {
  CT_TRY(*out = wrap(T(a).narrow(dim, start, length)))
}

ct_error ct_cat(const ct_tensor *ts, int n, int64_t dim, ct_tensor *out) {
  CT_TRY(*out = wrap(at::cat(tensors(ts, n), dim)))
}

ct_error ct_stack(const ct_tensor *ts, int n, int64_t dim, ct_tensor *out) {
  CT_TRY(*out = wrap(at::stack(tensors(ts, n), dim)))
}

ct_error ct_split(ct_tensor a, int64_t size, int64_t dim, ct_tensor *outs, int cap, int *n) {
  CT_TRY(put_list(T(a).split(size, dim), outs, cap, n))
}

ct_error ct_chunk(ct_tensor a, int64_t chunks, int64_t dim, ct_tensor *outs, int cap, int *n) {
  CT_TRY(put_list(T(a).chunk(chunks, dim), outs, cap, n))
}

ct_error ct_index_select(ct_tensor a, int64_t dim, ct_tensor index, ct_tensor *out) {
  CT_TRY(*out = wrap(at::index_select(T(a), dim, T(index))))
}

ct_error ct_gather(ct_tensor a, int64_t dim, ct_tensor index, ct_tensor *out) {
  CT_TRY(*out = wrap(at::gather(T(a), dim, T(index))))
}

ct_error ct_scatter(ct_tensor a, int64_t dim, ct_tensor index, ct_tensor src, ct_tensor *out) {
  CT_TRY(*out = wrap(at::scatter(T(a), dim, T(index), T(src))))
}

ct_error ct_masked_fill(ct_tensor a, ct_tensor mask, double value, ct_tensor *out) {
  CT_TRY(*out = wrap(at::masked_fill(T(a), T(mask), value)))
}

ct_error ct_where(ct_tensor cond, ct_tensor a, ct_tensor b, ct_tensor *out) {
  CT_TRY(*out = wrap(at::where(T(cond), T(a), T(b))))
}

ct_error ct_clamp(ct_tensor a, double lo, double hi, int has_lo, int has_hi, ct_tensor *out) {
  CT_TRY({
    c10::optional<at::Scalar> l, h;
    if (has_lo) l = lo;
    if (has_hi) h = hi;
    *out = wrap(at::clamp(T(a), l, h));
  })
}

ct_error ct_cumsum(ct_tensor a, int64_t dim, ct_tensor *out) { CT_TRY(*out = wrap(at::cumsum(T(a), dim))) }

ct_error ct_reduce(int op, ct_tensor ha, const int64_t *dims, int ndim, int keepdim, ct_tensor *out) {
  CT_TRY({
    const auto &a = T(ha);
    std::vector<int64_t> d(dims, dims + ndim);
    if (ndim == 0)
      for (int64_t i = 0; i < a.dim(); i++) d.push_back(i);
    at::Tensor r;
    switch (op) {
      case CT_SUM: r = ndim == 0 && !keepdim ? a.sum() : a.sum(d, keepdim != 0); break;
      case CT_MEAN: r = ndim == 0 && !keepdim ? a.mean() : a.mean(d, keepdim != 0); break;
      case CT_AMAX: r = at::amax(a, d, keepdim != 0); break;
      case CT_AMIN: r = at::amin(a, d, keepdim != 0); break;
      default: throw std::invalid_argument("unknown reduction " + std::to_string(op));
    }
    *out = wrap(std::move(r));
  })
}

ct_error ct_max_dim(ct_tensor a, int64_t dim, int keepdim, int min, ct_tensor *values, ct_tensor *indices) {
  CT_TRY({
    auto r = min ? at::min(T(a), dim, keepdim != 0) : at::max(T(a), dim, keepdim != 0);
    *values = wrap(std::get<0>(r));
    *indices = wrap(std::get<1>(r));
  })
}

ct_error ct_argmax(ct_tensor a, int64_t dim, int keepdim, ct_tensor *out) {
  CT_TRY(*out = wrap(at::argmax(T(a), dim, keepdim != 0)))
}

ct_error ct_topk(ct_tensor a, int64_t k, int64_t dim, int largest, ct_tensor *values, ct_tensor *indices) {
  CT_TRY({
    auto r = at::topk(T(a), k, dim, largest != 0, true);
    *values = wrap(std::get<0>(r));
    *indices = wrap(std::get<1>(r));
  })
}

ct_error ct_sort(ct_tensor a, int64_t dim, int descending, ct_tensor *values, ct_tensor *indices) {
  CT_TRY({
    // Stable, so equal values keep their index order on every device.
    auto r = at::sort(T(a), true, dim, descending != 0);
    *values = wrap(std::get<0>(r));
    *indices = wrap(std::get<1>(r));
  })
}

ct_error ct_softmax(ct_tensor a, int64_t dim, int log, ct_tensor *out) {
  CT_TRY({
    ct::BulkThreads bulk(T(a).numel());
    *out = wrap(log ? at::log_softmax(T(a), dim) : at::softmax(T(a), dim));
  })
}

ct_error ct_linear(ct_tensor x, ct_tensor w, ct_tensor b, ct_tensor *out) {
  CT_TRY({
    const auto &in = T(x);
    // The matmul is OpenBLAS's; the bias broadcast into the output is libtorch's.
    ct::BulkThreads bulk(in.numel() / std::max<int64_t>(in.size(-1), 1) * T(w).size(0));
    if (b && in.dim() > 2) {
      // One GEMM with the bias inside it: libtorch 1.13's linear runs a [..., in] input
      // as a matmul and a second pass over the output to add the bias.
      auto sizes = in.sizes().vec();
      sizes.back() = T(w).size(0);
      *out = wrap(at::addmm(T(b), in.reshape({-1, in.size(-1)}), T(w).t()).view(sizes));
      return nullptr;
    }
    c10::optional<at::Tensor> bias;
    if (b) bias = T(b);
    *out = wrap(at::linear(in, T(w), bias));
  })
}

ct_error ct_conv2d(ct_tensor x, ct_tensor w, ct_tensor b, int64_t stride_h, int64_t stride_w, int64_t pad_h,
                   int64_t pad_w, ct_tensor *out) {
  CT_TRY({
    c10::optional<at::Tensor> bias;
    if (b) bias = T(b);
    ct::BulkThreads bulk(T(x).numel());  // oneDNN's convolution runs on the OpenMP pool
    *out = wrap(at::conv2d(T(x), T(w), bias, {stride_h, stride_w}, {pad_h, pad_w}));
  })
}

ct_error ct_embedding(ct_tensor weight, ct_tensor ids, ct_tensor *out) {
  CT_TRY(*out = wrap(at::embedding(T(weight), T(ids))))
}

ct_error ct_layer_norm(ct_tensor x, ct_tensor w, ct_tensor b, int64_t normalized_dims, double eps, ct_tensor *out) {
  CT_TRY({
    const auto &t = T(x);
    if (normalized_dims < 1 || normalized_dims > t.dim())
      throw std::invalid_argument("layer_norm over " + std::to_string(normalized_dims) + " dims of a " +
                                  std::to_string(t.dim()) + "-d tensor");
    auto shape = t.sizes().slice(static_cast<size_t>(t.dim() - normalized_dims));
    ct::BulkThreads bulk(t.numel());
    c10::optional<at::Tensor> weight, bias;
    if (w) weight = T(w);
    if (b) bias = T(b);
    *out = wrap(at::layer_norm(t, shape, weight, bias, eps));
  })
}

ct_error ct_normalize(ct_tensor x, double p, int64_t dim, double eps, ct_tensor *out) {
  CT_TRY({
    const auto &t = T(x);
    auto norm = at::norm(t, p, {dim}, true).clamp_min(eps);
    *out = wrap(t / norm);
  })
}

ct_error ct_dropout(ct_tensor x, double p, int train, ct_tensor *out) {
  CT_TRY(*out = wrap(at::dropout(T(x), p, train != 0)))
}

ct_error ct_multinomial(ct_tensor probs, int64_t n, int replacement, ct_generator g, ct_tensor *out) {
  CT_TRY({
    c10::optional<at::Generator> gen;
    if (g) gen = g->g;
    *out = wrap(at::multinomial(T(probs), n, replacement != 0, gen));
  })
}

ct_error ct_cross_entropy(ct_tensor logits, ct_tensor target, int64_t ignore_index, double label_smoothing,
                          int reduction, ct_tensor *out) {
  CT_TRY({
    int64_t red = reduction == 0 ? at::Reduction::None : reduction == 2 ? at::Reduction::Sum : at::Reduction::Mean;
    *out = wrap(at::cross_entropy_loss(T(logits), T(target), {}, red, ignore_index, label_smoothing));
  })
}

int ct_fused_attention_available(void) {
#if TORCH_VERSION_MAJOR >= 2
  return 1;
#else
  return 0;
#endif
}

ct_error ct_attention(ct_tensor q, ct_tensor k, ct_tensor v, ct_tensor mask, int causal, double dropout_p, int impl,
                      ct_tensor *out) {
  CT_TRY({
    c10::optional<at::Tensor> m;
    if (mask) m = T(mask);
    // Scores [..., Lq, Lk]: their scaling, masking, softmax and copies are libtorch's.
    ct::BulkThreads bulk(T(q).numel() / std::max<int64_t>(T(q).size(-1), 1) * T(k).size(-2));
#if TORCH_VERSION_MAJOR >= 2
    if (impl == 0 && !(causal && m)) {
      *out = wrap(at::scaled_dot_product_attention(T(q), T(k), T(v), m, dropout_p, causal != 0));
      return nullptr;
    }
#endif
    *out = wrap(explicit_attention(T(q), T(k), T(v), m, causal != 0, dropout_p));
  })
}

ct_error ct_copy_(ct_tensor dst, ct_tensor src) {
  CT_TRY({
    at::NoGradGuard guard;
    dst->t.copy_(T(src));
  })
}

ct_error ct_fill_(ct_tensor dst, double value) {
  CT_TRY({
    at::NoGradGuard guard;
    dst->t.fill_(value);
  })
}

ct_error ct_lerp_scale_(ct_tensor dst, ct_tensor src, double a, double b) {
  CT_TRY({
    at::NoGradGuard guard;
    dst->t.mul_(a).add_(T(src), b);
  })
}

}  // extern "C"
