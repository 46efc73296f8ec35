// Internal helpers shared by dist.cpp (rendezvous, collectives) and dist_grad_sync.cpp.
#pragma once

#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>
#if TORCH_VERSION_MAJOR >= 2
#include <torch/csrc/distributed/c10d/Backend.hpp>
#endif

#include <chrono>
#include <string>
#include <vector>

#include "shim.h"

namespace ct {

// From 2.0 on, ProcessGroupGloo and ProcessGroupNCCL are c10d::Backends behind a
// dispatching ProcessGroup; in 1.13 they are ProcessGroups. The collectives used here
// have the same signatures on both.
#if TORCH_VERSION_MAJOR >= 2
using Comm = c10d::Backend;
#else
using Comm = c10d::ProcessGroup;
#endif

// The tensors of one bucket, as indices into the caller's list.
using Bucket = std::vector<size_t>;

// Packs ts (in the given order) into buckets of at most cap bytes, a new bucket also
// starting where dtype or device change: one flat buffer must have one of each.
std::vector<Bucket> plan_buckets(const std::vector<at::Tensor> &ts, const std::vector<size_t> &order,
                                 int64_t cap);

// One contiguous 1-D buffer holding the bucket's tensors end to end.
at::Tensor flatten(const std::vector<at::Tensor> &ts, const Bucket &b);
// Copies the bucket's slices of flat back into the tensors (autograd off: they may be
// leaves that require grad).
void unflatten(const at::Tensor &flat, const std::vector<at::Tensor> &ts, const Bucket &b);

// Waits for w, turning a timeout or a peer's failure into an error that says what was
// being waited for.
void wait(const c10::intrusive_ptr<c10d::Work> &w, std::chrono::milliseconds timeout,
          const std::string &what);

int64_t nbytes(const at::Tensor &t);
std::string secs(std::chrono::milliseconds d);  // "1.5s"

}  // namespace ct

struct ct_pg_s {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<ct::Comm> comm;
  std::chrono::milliseconds timeout;
  int rank, size;
};
