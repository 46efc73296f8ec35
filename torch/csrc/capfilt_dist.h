/*
 * capfilt_dist.h - the C ABI for data-parallel training over libtorch's own distributed
 * layer (c10d): a TCPStore rendezvous, ProcessGroupGloo on CPU (ProcessGroupNCCL when the
 * shim is built with CAPFILT_WITH_NCCL), bucketed collectives and a gradient all-reduce
 * that overlaps the backward pass. Included at the end of capfilt_torch.h; the same rules
 * hold (NULL or a ct_error, no exception crosses, outputs written only on success).
 *
 * Every rank must issue the same collectives in the same order: c10d matches them by a
 * sequence number, not by name.
 */
#ifndef CAPFILT_DIST_H
#define CAPFILT_DIST_H

#include "capfilt_torch.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ct_pg_s *ct_pg;
typedef struct ct_grad_sync_s *ct_grad_sync;

enum ct_dist_backend { CT_GLOO = 0, CT_NCCL = 1 };
enum ct_dist_reduce { CT_RED_SUM = 0, CT_RED_AVG, CT_RED_MAX, CT_RED_MIN };

typedef struct ct_dist_config {
  const char *master_addr;
  int master_port;
  int rank, world_size;
  /* 1: a launcher agent hosts the TCPStore and every rank is a client, under the key
   * prefix "/worker/attempt_<restart_count>" (torchrun's TORCHELASTIC_USE_AGENT_STORE) */
  int agent_store;
  int restart_count;
  int backend;                  /* ct_dist_backend */
  int64_t timeout_ms;           /* every rendezvous step and every collective */
  const char *gloo_interfaces;  /* comma-separated interface names, or NULL/"" for the
                                   address this host's name resolves to */
} ct_dist_config;

int ct_nccl_compiled(void); /* 1 if the shim was built with ProcessGroupNCCL */

ct_error ct_pg_new(const ct_dist_config *cfg, ct_pg *out);
void ct_pg_free(ct_pg pg);
int ct_pg_rank(ct_pg pg);
int ct_pg_size(ct_pg pg);

/* In place on every rank. Tensors are packed into contiguous buckets of at most
 * bucket_bytes (one tensor larger than that is a bucket of its own), every bucket is
 * launched before the first is waited for. */
ct_error ct_pg_all_reduce(ct_pg pg, const ct_tensor *ts, int n, int op, int64_t bucket_bytes);
ct_error ct_pg_broadcast(ct_pg pg, const ct_tensor *ts, int n, int root, int64_t bucket_bytes);
/* x has the same shape on every rank; out is [world * x.size(0), ...] in rank order */
ct_error ct_pg_all_gather(ct_pg pg, ct_tensor x, ct_tensor *out);
/* the same with a gradient (BLIP's all_gather_with_grad): its backward all-reduces the
 * result's gradient (a collective every rank's backward must reach) and returns this
 * rank's rows of the sum */
ct_error ct_pg_all_gather_with_grad(ct_pg pg, ct_tensor x, ct_tensor *out);
ct_error ct_pg_barrier(ct_pg pg);

/* Gradient averaging for a fixed parameter list (every rank registers the same list, in
 * the same order; checked at creation). Between prepare and finish, each bucket's
 * all-reduce is launched from an autograd hook as soon as its last gradient is
 * accumulated; finish launches the rest, waits, and writes the averages into .grad. */
ct_error ct_grad_sync_new(ct_pg pg, const ct_tensor *params, int n, int64_t bucket_bytes,
                          ct_grad_sync *out);
void ct_grad_sync_free(ct_grad_sync g);
int ct_grad_sync_buckets(ct_grad_sync g);
ct_error ct_grad_sync_prepare(ct_grad_sync g);
/* launched_early: buckets launched during backward; wait_s: time finish spent waiting */
ct_error ct_grad_sync_finish(ct_grad_sync g, int *launched_early, double *wait_s);

#ifdef __cplusplus
}
#endif
#endif
