/*
 * capfilt_torch.h - the C ABI between package torch (Go) and libtorch (C++).
 *
 * Rules every function follows:
 *   - it returns NULL on success, or a ct_error the caller frees with ct_error_free;
 *     no C++ exception ever crosses this boundary;
 *   - tensors are opaque handles (one heap at::Tensor each) freed with ct_free;
 *   - outputs are written through the trailing pointer arguments, only on success.
 * The same file set compiles against libtorch 1.13 and 2.x, CPU or CUDA builds.
 */
#ifndef CAPFILT_TORCH_H
#define CAPFILT_TORCH_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ct_tensor_s *ct_tensor;
typedef struct ct_generator_s *ct_generator;
typedef struct ct_optimizer_s *ct_optimizer;
typedef struct ct_mapping_s *ct_mapping;

enum ct_error_code {
  CT_ERR_TORCH = 1,    /* an error raised by libtorch (shape mismatch, bad argument, ...) */
  CT_ERR_OOM = 2,      /* out of memory on the device (CUDA) or host */
  CT_ERR_ARGUMENT = 3, /* an error found by the shim itself */
};

typedef struct ct_error_s {
  int code;
  char *msg;
} *ct_error;

void ct_error_free(ct_error e);

/* dtypes, in this order everywhere */
enum ct_dtype {
  CT_F32 = 0, CT_F64, CT_F16, CT_BF16, CT_I64, CT_I32, CT_I16, CT_I8, CT_U8, CT_BOOL
};

/* devices: type 0 = cpu, 1 = cuda; index -1 for "current" on cpu */
typedef struct ct_device {
  int type;
  int index;
} ct_device;

/* ---- library and machine info ---- */
const char *ct_torch_version(void);        /* e.g. "1.13.0", static string */
ct_error ct_config(char **out);             /* at::show_config(), malloc'd */
ct_error ct_parallel_info(char **out);      /* at::get_parallel_info(), malloc'd */
ct_error ct_blas_info(char **lib, char **core, char **config); /* malloc'd, "" if unknown */
void ct_set_num_threads(int n);  /* libtorch's intra-op threads and OpenBLAS's */
int ct_get_num_threads(void);
void ct_set_blas_threads(int n); /* OpenBLAS's alone */
int ct_get_blas_threads(void);   /* 0 when the BLAS is not OpenBLAS */
void ct_set_bulk_threads(int n); /* libtorch's threads for ops over >= 2^18 elements (memory.cpp) */
int ct_get_bulk_threads(void);
/* host memory: the malloc arena limit the shim set at load (0: left to glibc) */
int ct_malloc_arenas(void);
int ct_release_host_memory(void); /* cached buffers and freed heap back to the OS; 1 if any heap was */
/* the large-buffer cache's bytes live, kept and most live at once, and its hits and misses;
 * returns 0 (and writes nothing) when the cache is not in use */
/* turns the large-buffer cache on or off; 0 if this build cannot (libtorch >= 2 has none) */
int ct_set_buffer_cache(int on);
int ct_buffer_cache_stats(int64_t *live, int64_t *cached, int64_t *peak_live, int64_t *hits, int64_t *misses);
int ct_cuda_is_available(void);
int ct_cuda_device_count(void);
int ct_cuda_compiled(void);                 /* 1 if the shim was built with CUDA support */
ct_error ct_cuda_synchronize(int device);
ct_error ct_cuda_device_name(int device, char **name);
/* bytes: total, free (driver), allocated and reserved (caching allocator), peak allocated */
ct_error ct_cuda_memory(int device, int64_t *total, int64_t *free_, int64_t *allocated,
                        int64_t *reserved, int64_t *peak_allocated);
ct_error ct_cuda_empty_cache(void);
void ct_manual_seed(uint64_t seed);
int ct_grad_enabled(void);
void ct_set_grad_enabled(int enabled);

/* ---- tensor lifetime and metadata ---- */
void ct_free(ct_tensor t);
ct_error ct_shallow_copy(ct_tensor t, ct_tensor *out); /* a second handle on the same tensor */
int ct_dim(ct_tensor t);
void ct_shape(ct_tensor t, int64_t *dims); /* dims has room for ct_dim entries */
int ct_dtype_of(ct_tensor t);
ct_device ct_device_of(ct_tensor t);
int64_t ct_numel(ct_tensor t);
int ct_requires_grad(ct_tensor t);
int ct_defined(ct_tensor t);

/* ---- creation ---- */
ct_error ct_from_data(const void *data, int dtype, const int64_t *shape, int ndim, ct_tensor *out);
ct_error ct_copy_to(ct_tensor t, void *data, int64_t nbytes); /* contiguous cpu copy of t */
ct_error ct_full(const int64_t *shape, int ndim, double value, int dtype, ct_device dev, ct_tensor *out);
ct_error ct_arange(double start, double end, double step, int dtype, ct_device dev, ct_tensor *out);
ct_generator ct_generator_new(uint64_t seed);
void ct_generator_free(ct_generator g);
/* kind: 0 = normal(0,1), 1 = uniform[0,1) */
ct_error ct_random(ct_generator g, int kind, const int64_t *shape, int ndim, int dtype,
                   ct_device dev, ct_tensor *out);
ct_error ct_to(ct_tensor t, ct_device dev, int dtype, ct_tensor *out);

/* memory-mapped files: tensors created by ct_mapping_tensor share the file's pages
 * (copy-on-write) and keep the mapping alive until the last of them is freed. */
ct_error ct_mapping_open(const char *path, ct_mapping *out);
void ct_mapping_release(ct_mapping m);
int64_t ct_mapping_size(ct_mapping m);
ct_error ct_mapping_tensor(ct_mapping m, int64_t offset, int dtype, const int64_t *shape,
                           const int64_t *strides, int ndim, ct_tensor *out);

/* ---- elementwise and shape ops ---- */
enum ct_unary_op {
  CT_NEG = 0, CT_EXP, CT_LOG, CT_SQRT, CT_RSQRT, CT_TANH, CT_SIGMOID, CT_RELU, CT_GELU_ERF,
  CT_GELU_TANH, CT_ABS, CT_CONTIGUOUS, CT_CLONE, CT_DETACH, CT_LOGICAL_NOT, CT_ISNAN
};
ct_error ct_unary(int op, ct_tensor a, ct_tensor *out);

enum ct_binary_op {
  CT_ADD = 0, CT_SUB, CT_MUL, CT_DIV, CT_POW, CT_MATMUL, CT_BMM, CT_MAXIMUM, CT_MINIMUM,
  CT_EQ, CT_NE, CT_LT, CT_LE, CT_GT, CT_GE, CT_LOGICAL_AND, CT_LOGICAL_OR
};
ct_error ct_binary(int op, ct_tensor a, ct_tensor b, ct_tensor *out);
/* a op s (s broadcast), and s op a when reversed != 0 (only for SUB, DIV, POW) */
ct_error ct_binary_scalar(int op, ct_tensor a, double s, int reversed, ct_tensor *out);

ct_error ct_reshape(ct_tensor a, const int64_t *shape, int ndim, int view_only, ct_tensor *out);
ct_error ct_permute(ct_tensor a, const int64_t *dims, int ndim, ct_tensor *out);
ct_error ct_transpose(ct_tensor a, int64_t d0, int64_t d1, ct_tensor *out);
ct_error ct_expand(ct_tensor a, const int64_t *shape, int ndim, ct_tensor *out);
ct_error ct_repeat(ct_tensor a, const int64_t *reps, int ndim, ct_tensor *out);
ct_error ct_unsqueeze(ct_tensor a, int64_t dim, ct_tensor *out);
ct_error ct_squeeze(ct_tensor a, int64_t dim, ct_tensor *out);
ct_error ct_flip(ct_tensor a, const int64_t *dims, int ndim, ct_tensor *out);
ct_error ct_narrow(ct_tensor a, int64_t dim, int64_t start, int64_t length, ct_tensor *out);
ct_error ct_cat(const ct_tensor *ts, int n, int64_t dim, ct_tensor *out);
ct_error ct_stack(const ct_tensor *ts, int n, int64_t dim, ct_tensor *out);
/* split into pieces of size `size` (the last may be smaller); outs has room for `cap` */
ct_error ct_split(ct_tensor a, int64_t size, int64_t dim, ct_tensor *outs, int cap, int *n);
ct_error ct_chunk(ct_tensor a, int64_t chunks, int64_t dim, ct_tensor *outs, int cap, int *n);
ct_error ct_index_select(ct_tensor a, int64_t dim, ct_tensor index, ct_tensor *out);
ct_error ct_gather(ct_tensor a, int64_t dim, ct_tensor index, ct_tensor *out);
ct_error ct_scatter(ct_tensor a, int64_t dim, ct_tensor index, ct_tensor src, ct_tensor *out);
ct_error ct_masked_fill(ct_tensor a, ct_tensor mask, double value, ct_tensor *out);
ct_error ct_where(ct_tensor cond, ct_tensor a, ct_tensor b, ct_tensor *out);
ct_error ct_clamp(ct_tensor a, double lo, double hi, int has_lo, int has_hi, ct_tensor *out);
ct_error ct_cumsum(ct_tensor a, int64_t dim, ct_tensor *out);

/* ---- reductions ---- */
enum ct_reduce_op { CT_SUM = 0, CT_MEAN, CT_AMAX, CT_AMIN };
/* ndim == 0 reduces over every dimension */
ct_error ct_reduce(int op, ct_tensor a, const int64_t *dims, int ndim, int keepdim, ct_tensor *out);
ct_error ct_max_dim(ct_tensor a, int64_t dim, int keepdim, int min, ct_tensor *values,
                    ct_tensor *indices);
ct_error ct_argmax(ct_tensor a, int64_t dim, int keepdim, ct_tensor *out);
ct_error ct_topk(ct_tensor a, int64_t k, int64_t dim, int largest, ct_tensor *values,
                 ct_tensor *indices);
ct_error ct_sort(ct_tensor a, int64_t dim, int descending, ct_tensor *values, ct_tensor *indices);
ct_error ct_softmax(ct_tensor a, int64_t dim, int log, ct_tensor *out);

/* ---- neural-network ops ---- */
ct_error ct_linear(ct_tensor x, ct_tensor w, ct_tensor b /* may be NULL */, ct_tensor *out);
ct_error ct_conv2d(ct_tensor x, ct_tensor w, ct_tensor b, int64_t stride_h, int64_t stride_w,
                   int64_t pad_h, int64_t pad_w, ct_tensor *out);
ct_error ct_embedding(ct_tensor weight, ct_tensor ids, ct_tensor *out);
ct_error ct_layer_norm(ct_tensor x, ct_tensor w, ct_tensor b, int64_t normalized_dims,
                       double eps, ct_tensor *out);
ct_error ct_normalize(ct_tensor x, double p, int64_t dim, double eps, ct_tensor *out);
ct_error ct_dropout(ct_tensor x, double p, int train, ct_tensor *out);
ct_error ct_multinomial(ct_tensor probs, int64_t n, int replacement, ct_generator g,
                        ct_tensor *out);
/* reduction: 0 none, 1 mean, 2 sum */
ct_error ct_cross_entropy(ct_tensor logits, ct_tensor target, int64_t ignore_index,
                          double label_smoothing, int reduction, ct_tensor *out);
/* mask: NULL, an additive float mask, or a bool mask (true = attend); broadcast to
 * [..., Lq, Lk]. impl: 0 = best available, 1 = the explicit matmul-softmax-matmul form. */
ct_error ct_attention(ct_tensor q, ct_tensor k, ct_tensor v, ct_tensor mask, int causal,
                      double dropout_p, int impl, ct_tensor *out);
int ct_fused_attention_available(void);

/* ---- in-place ---- */
ct_error ct_copy_(ct_tensor dst, ct_tensor src);
ct_error ct_fill_(ct_tensor dst, double value);
/* dst = dst * a + src * b (used for EMA updates) */
ct_error ct_lerp_scale_(ct_tensor dst, ct_tensor src, double a, double b);

/* ---- autograd ---- */
ct_error ct_set_requires_grad(ct_tensor t, int requires);
ct_error ct_backward(ct_tensor t);
/* *out is NULL when t has no gradient */
ct_error ct_grad(ct_tensor t, ct_tensor *out);
ct_error ct_zero_grad(ct_tensor t);
ct_error ct_clip_grad_norm(const ct_tensor *params, int n, double max_norm, double *total);

/* ---- AdamW ---- */
typedef struct ct_adamw_group {
  const ct_tensor *params;
  int n;
  double lr, beta1, beta2, eps, weight_decay;
} ct_adamw_group;
ct_error ct_adamw_new(const ct_adamw_group *groups, int ngroups, ct_optimizer *out);
void ct_optimizer_free(ct_optimizer o);
ct_error ct_optimizer_step(ct_optimizer o);
ct_error ct_optimizer_zero_grad(ct_optimizer o);
ct_error ct_optimizer_set_lr(ct_optimizer o, int group, double lr);
ct_error ct_optimizer_save(ct_optimizer o, const char *path);
ct_error ct_optimizer_load(ct_optimizer o, const char *path);

/* ==== training (train.cpp): random-number state, in-place and autograd helpers ==== */
/* A generator's state as bytes (malloc'd into *out, *n bytes), and back. g NULL means
 * libtorch's default generator of device dev: dropout and every op given no generator
 * draw from it. Restoring a state replays the same draws (bit-identical resume). */
ct_error ct_generator_get_state(ct_generator g, ct_device dev, uint8_t **out, int64_t *n);
ct_error ct_generator_set_state(ct_generator g, ct_device dev, const uint8_t *data, int64_t n);
/* t clamped to [lo, hi] in place, outside autograd (the ITC temperature) */
ct_error ct_clamp_(ct_tensor t, double lo, double hi);
/* a copy of t cut off from autograd (requires_grad false): momentum copies */
ct_error ct_detached_clone(ct_tensor t, ct_tensor *out);
/* sets t's gradient to g (NULL drops it) */
ct_error ct_set_grad(ct_tensor t, ct_tensor g);
/* embedding whose padding row receives no gradient from the lookup (nn.Embedding padding_idx) */
ct_error ct_embedding_padded(ct_tensor weight, ct_tensor ids, int64_t padding_idx, ct_tensor *out);
/* dst[i] = m*dst[i] + (1-m)*src[i] for every pair, in place, outside autograd (EMA) */
ct_error ct_ema_(const ct_tensor *dst, const ct_tensor *src, int n, double m);
/* the number of tensor handles alive (made and not yet freed): leak checks */
int64_t ct_live_tensors(void);

/* ---- benchmarks: timed inside C++ so Go can compare its own overhead ---- */
ct_error ct_bench_matmul(int64_t n, int iters, double *seconds);

#ifdef __cplusplus
}
#endif
#endif
#include "capfilt_dist.h"
