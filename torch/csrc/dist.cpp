// Rendezvous and collectives over libtorch's c10d: a TCPStore at MASTER_ADDR:MASTER_PORT,
// then ProcessGroupGloo (CPU) or ProcessGroupNCCL (CUDA, only when the shim is built with
// CAPFILT_WITH_NCCL, which scripts/build-torch-shim.sh decides from the libtorch it links).
//
// The store keys are laid out the way torch.distributed.init_process_group lays them out
// (PrefixStore "default_pg", then the group name "0"; the store barrier and the sequence
// number of 1.13), so a capfilt rank and a Python rank of the same libtorch version can
// sit in one group.

// Debian's and pytorch.org's Linux libtorch are built with Gloo; the header hides the
// class unless told so.
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO
#endif

#include "dist.h"

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef CAPFILT_WITH_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <ATen/core/grad_mode.h>

#include <sstream>
#include <thread>

namespace ct {

std::string secs(std::chrono::milliseconds d) {
  std::ostringstream s;
  s << d.count() / 1000.0 << "s";
  return s.str();
}

int64_t nbytes(const at::Tensor &t) { return t.numel() * static_cast<int64_t>(t.element_size()); }

std::vector<Bucket> plan_buckets(const std::vector<at::Tensor> &ts, const std::vector<size_t> &order,
                                 int64_t cap) {
  std::vector<Bucket> out;
  int64_t used = 0;
  for (size_t i : order) {
    const auto &t = ts[i];
    if (t.is_sparse())
      throw std::invalid_argument("tensor " + std::to_string(i) + " is sparse; only dense tensors are reduced");
    bool fresh = out.empty() || used + nbytes(t) > cap;
    if (!fresh) {
      const auto &first = ts[out.back().front()];
      fresh = first.scalar_type() != t.scalar_type() || first.device() != t.device();
    }
    if (fresh) {
      out.emplace_back();
      used = 0;
    }
    out.back().push_back(i);
    used += nbytes(t);
  }
  return out;
}

at::Tensor flatten(const std::vector<at::Tensor> &ts, const Bucket &b) {
  std::vector<at::Tensor> parts;
  parts.reserve(b.size());
  for (size_t i : b) parts.push_back(ts[i].detach().reshape({-1}));
  return at::cat(parts);
}

void unflatten(const at::Tensor &flat, const std::vector<at::Tensor> &ts, const Bucket &b) {
  at::NoGradGuard no_grad;
  int64_t off = 0;
  for (size_t i : b) {
    auto &t = ts[i];
    t.copy_(flat.narrow(0, off, t.numel()).view(t.sizes()));
    off += t.numel();
  }
}

// What a collective's failure most likely means, for the person reading the log.
static std::string diagnosis(const std::string &msg, std::chrono::milliseconds timeout) {
  auto has = [&](const char *s) { return msg.find(s) != std::string::npos; };
  if (has("timed out") || has("Timed out"))
    return " (no answer within " + ct::secs(timeout) + ": a rank hung, died, or issued a different collective)";
  if (has("Connection closed") || has("reset by peer") || has("Read error") || has("Write error") || has("Broken pipe"))
    return " (the connection to a rank broke: it died or left the group)";
  return "";
}

void wait(const c10::intrusive_ptr<c10d::Work> &w, std::chrono::milliseconds timeout, const std::string &what) {
  std::string msg;
  try {
    w->wait(timeout);
    return;
  } catch (const c10::Error &e) {
    msg = e.what_without_backtrace();
  } catch (const std::exception &e) {
    msg = e.what();
  }
  throw std::runtime_error(what + ": " + msg + diagnosis(msg, timeout));
}

}  // namespace ct

namespace {

std::vector<at::Tensor> tensors(const ct_tensor *ts, int n) {
  std::vector<at::Tensor> out;
  out.reserve(n);
  for (int i = 0; i < n; i++) out.push_back(ts[i]->t);
  return out;
}

// torch.distributed (1.13) makes every rank add itself to a counter in the store after
// creating the group and waits for all of them; a Python peer waits for us there.
void store_barrier(c10d::Store &store, int world, std::chrono::milliseconds timeout) {
  const std::string key = "store_based_barrier_key:1";
  store.add(key, 1);
  auto start = std::chrono::steady_clock::now();
  for (;;) {
    int64_t n = store.add(key, 0);
    if (n >= world) return;
    if (std::chrono::steady_clock::now() - start > timeout)
      throw std::runtime_error("timed out after " + ct::secs(timeout) + " in the store barrier: " + std::to_string(n) +
                               " of " + std::to_string(world) + " ranks arrived");
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

c10::intrusive_ptr<ct::Comm> make_gloo(const c10::intrusive_ptr<c10d::Store> &store, const ct_dist_config &cfg,
                                       std::chrono::milliseconds timeout) {
  auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
  std::string ifs = cfg.gloo_interfaces ? cfg.gloo_interfaces : "";
  std::stringstream ss(ifs);
  for (std::string name; std::getline(ss, name, ',');) {
    if (!name.empty()) opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(name));
  }
  if (opts->devices.empty()) opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
  // Two worker threads per device, as torch.distributed uses: one bucket can reduce while
  // the next is queued.
  opts->threads = static_cast<int>(opts->devices.size()) * 2;
  return c10::make_intrusive<c10d::ProcessGroupGloo>(store, cfg.rank, cfg.world_size, opts);
}

c10::intrusive_ptr<ct::Comm> make_nccl(const c10::intrusive_ptr<c10d::Store> &store, const ct_dist_config &cfg,
                                       std::chrono::milliseconds timeout) {
#ifdef CAPFILT_WITH_NCCL
  auto opts = c10d::ProcessGroupNCCL::Options::create();
  opts->timeout = timeout;
  return c10::make_intrusive<c10d::ProcessGroupNCCL>(store, cfg.rank, cfg.world_size, opts);
#else
  throw std::invalid_argument(
      "the NCCL backend is not in this shim: rebuild it (scripts/build-torch-shim.sh) against a CUDA libtorch "
      "that has ProcessGroupNCCL");
#endif
}

// A rank may start before the host listens. libtorch 1.13's client retries the connect
// for only about its timeout minus a second (at once gives up under 1.5 s), so the
// clients retry here until the whole timeout has passed.
c10::intrusive_ptr<c10d::Store> join_store(const std::string &addr, c10d::TCPStoreOptions so, bool host) {
  if (host) return c10::make_intrusive<c10d::TCPStore>(addr, so);
  const auto timeout = so.timeout;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    try {
      auto store = c10::make_intrusive<c10d::TCPStore>(addr, so);
      store->setTimeout(timeout);
      return store;
    } catch (const std::exception &e) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) {
        auto *ce = dynamic_cast<const c10::Error *>(&e);
        throw std::runtime_error("no store answered within " + ct::secs(timeout) + " (is rank 0 running?): " +
                                 (ce ? ce->what_without_backtrace() : e.what()));
      }
      auto pause = std::min(left, std::chrono::milliseconds(500));
      std::this_thread::sleep_for(pause);
      so.timeout = std::max(left - pause, std::chrono::milliseconds(1));
    }
  }
}

std::string where(const ct_dist_config &cfg) {
  return "rank " + std::to_string(cfg.rank) + " of " + std::to_string(cfg.world_size) + " at " + cfg.master_addr +
         ":" + std::to_string(cfg.master_port);
}

// Runs one step of the rendezvous, naming it in any error.
template <class F>
auto step(const std::string &what, F f) -> decltype(f()) {
  try {
    return f();
  } catch (const c10::Error &e) {
    throw std::runtime_error(what + ": " + e.what_without_backtrace());
  } catch (const std::exception &e) {
    throw std::runtime_error(what + ": " + e.what());
  }
}

c10d::ReduceOp reduce_op(int op) {
  switch (op) {
    case CT_RED_SUM:
    case CT_RED_AVG: return c10d::ReduceOp::SUM;  // Gloo has no average: sum, then divide
    case CT_RED_MAX: return c10d::ReduceOp::MAX;
    case CT_RED_MIN: return c10d::ReduceOp::MIN;
  }
  throw std::invalid_argument("unknown reduce op " + std::to_string(op));
}

void check_bucket_bytes(int64_t b) {
  if (b <= 0) throw std::invalid_argument("bucket size must be positive, got " + std::to_string(b) + " bytes");
}

}  // namespace

extern "C" {

int ct_nccl_compiled(void) {
#ifdef CAPFILT_WITH_NCCL
  return 1;
#else
  return 0;
#endif
}

ct_error ct_pg_new(const ct_dist_config *cfg, ct_pg *out) {
  CT_TRY({
    const auto &c = *cfg;
    if (c.world_size < 1 || c.rank < 0 || c.rank >= c.world_size)
      throw std::invalid_argument("rank " + std::to_string(c.rank) + " is not in a world of " +
                                  std::to_string(c.world_size));
    if (c.master_port < 0 || c.master_port > 65535)
      throw std::invalid_argument("port " + std::to_string(c.master_port) + " is not in 0..65535");
    if (c.timeout_ms <= 0) throw std::invalid_argument("timeout must be positive");
    std::chrono::milliseconds timeout(c.timeout_ms);
    const bool host = !c.agent_store && c.rank == 0;

    c10d::TCPStoreOptions so;
    so.port = static_cast<uint16_t>(c.master_port);
    so.isServer = host;
    so.numWorkers = static_cast<size_t>(c.world_size);
    so.waitWorkers = true;
    so.timeout = timeout;
    so.multiTenant = host;
    std::string what = where(c) + (host ? ": host the store" : ": join the store");
    auto t0 = std::chrono::steady_clock::now();
    c10::intrusive_ptr<c10d::Store> store = step(what, [&] { return join_store(c.master_addr, so, host); });
    // The host's TCPStore waits for the others to join, but when the timeout runs out it
    // returns as if they had (1.13); only the time it took tells.
    if (host && c.world_size > 1 && std::chrono::steady_clock::now() - t0 >= timeout)
      throw std::runtime_error(what + ": not every one of the " + std::to_string(c.world_size) +
                               " ranks joined within " + ct::secs(timeout));
    if (c.agent_store)
      store = c10::make_intrusive<c10d::PrefixStore>("/worker/attempt_" + std::to_string(c.restart_count), store);
    store = c10::make_intrusive<c10d::PrefixStore>("default_pg", store);
#if TORCH_VERSION_MAJOR >= 2
    auto group_store = c10::make_intrusive<c10d::PrefixStore>("0/", store);
#else
    auto group_store = c10::make_intrusive<c10d::PrefixStore>("0", store);
#endif

    const char *name = c.backend == CT_NCCL ? "NCCL" : "Gloo";
    std::string connect = where(c) + ": connect the " + name + " group (every rank must reach every other within " +
                          ct::secs(timeout) + ")";
    auto comm = step(connect, [&] {
      if (c.backend == CT_GLOO) return make_gloo(group_store, c, timeout);
      if (c.backend == CT_NCCL) return make_nccl(group_store, c, timeout);
      throw std::invalid_argument("unknown backend " + std::to_string(c.backend));
    });
#if TORCH_VERSION_MAJOR < 2
    step(where(c), [&] { store_barrier(*store, c.world_size, timeout); });
#endif
    step(where(c) + ": agree on the sequence number", [&] { comm->setSequenceNumberForGroup(); });
    *out = new ct_pg_s{store, comm, timeout, c.rank, c.world_size};
  })
}

void ct_pg_free(ct_pg pg) { delete pg; }
int ct_pg_rank(ct_pg pg) { return pg->rank; }
int ct_pg_size(ct_pg pg) { return pg->size; }

ct_error ct_pg_all_reduce(ct_pg pg, const ct_tensor *handles, int n, int op, int64_t bucket_bytes) {
  CT_TRY({
    check_bucket_bytes(bucket_bytes);
    auto ts = tensors(handles, n);
    std::vector<size_t> order(ts.size());
    for (size_t i = 0; i < order.size(); i++) order[i] = i;
    auto buckets = ct::plan_buckets(ts, order, bucket_bytes);
    c10d::AllreduceOptions opts;
    opts.reduceOp = reduce_op(op);
    for (size_t i = 0; i < ts.size(); i++)
      if (op == CT_RED_AVG && !ts[i].is_floating_point())
        throw std::invalid_argument("tensor " + std::to_string(i) + " is not floating point: it cannot be averaged");

    // A bucket of one contiguous tensor is reduced in place, without a copy.
    std::vector<at::Tensor> flats;
    std::vector<bool> in_place;
    std::vector<c10::intrusive_ptr<c10d::Work>> works;
    for (const auto &b : buckets) {
      const auto &t0 = ts[b.front()];
      in_place.push_back(b.size() == 1 && t0.is_contiguous());
      flats.push_back(in_place.back() ? t0.detach() : ct::flatten(ts, b));
      std::vector<at::Tensor> v{flats.back()};
      works.push_back(pg->comm->allreduce(v, opts));
    }
    at::NoGradGuard no_grad;
    for (size_t k = 0; k < buckets.size(); k++) {
      ct::wait(works[k], pg->timeout,
               "all-reduce of bucket " + std::to_string(k + 1) + "/" + std::to_string(buckets.size()) + " (" +
                   std::to_string(ct::nbytes(flats[k])) + " bytes)");
      if (op == CT_RED_AVG) flats[k].div_(pg->size);
      if (!in_place[k]) ct::unflatten(flats[k], ts, buckets[k]);
    }
  })
}

ct_error ct_pg_broadcast(ct_pg pg, const ct_tensor *handles, int n, int root, int64_t bucket_bytes) {
  CT_TRY({
    check_bucket_bytes(bucket_bytes);
    if (root < 0 || root >= pg->size)
      throw std::invalid_argument("root " + std::to_string(root) + " is not in a world of " + std::to_string(pg->size));
    auto ts = tensors(handles, n);
    std::vector<size_t> order(ts.size());
    for (size_t i = 0; i < order.size(); i++) order[i] = i;
    auto buckets = ct::plan_buckets(ts, order, bucket_bytes);
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    opts.rootTensor = 0;

    std::vector<at::Tensor> flats;
    std::vector<bool> in_place;
    std::vector<c10::intrusive_ptr<c10d::Work>> works;
    for (const auto &b : buckets) {
      const auto &t0 = ts[b.front()];
      in_place.push_back(b.size() == 1 && t0.is_contiguous());
      flats.push_back(in_place.back() ? t0.detach() : ct::flatten(ts, b));
      std::vector<at::Tensor> v{flats.back()};
      works.push_back(pg->comm->broadcast(v, opts));
    }
    for (size_t k = 0; k < buckets.size(); k++) {
      ct::wait(works[k], pg->timeout,
               "broadcast of bucket " + std::to_string(k + 1) + "/" + std::to_string(buckets.size()) + " from rank " +
                   std::to_string(root));
      if (pg->rank != root && !in_place[k]) ct::unflatten(flats[k], ts, buckets[k]);
    }
  })
}

ct_error ct_pg_all_gather(ct_pg pg, ct_tensor x, ct_tensor *out) {
  CT_TRY({
    const auto &t = x->t;
    if (t.dim() == 0) throw std::invalid_argument("all-gather needs a tensor with a first dimension, got a scalar");
    auto in = t.detach().contiguous();
    auto sizes = in.sizes().vec();
    int64_t rows = sizes[0];
    sizes[0] = rows * pg->size;
    auto res = at::empty(sizes, in.options());
    std::vector<std::vector<at::Tensor>> outs(1);
    for (int r = 0; r < pg->size; r++) outs[0].push_back(res.narrow(0, r * rows, rows));
    std::vector<at::Tensor> ins{in};
    ct::wait(pg->comm->allgather(outs, ins), pg->timeout, "all-gather of " + std::to_string(ct::nbytes(in)) + " bytes");
    *out = ct::wrap(res);
  })
}

ct_error ct_pg_barrier(ct_pg pg) { CT_TRY(ct::wait(pg->comm->barrier(), pg->timeout, "barrier")) }

}  // extern "C"
