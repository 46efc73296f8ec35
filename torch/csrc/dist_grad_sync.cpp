// Gradient averaging that overlaps the backward pass, the way DDP's reducer does it:
// parameters are packed into buckets in reverse registration order (a model's last
// layers get their gradients first), a post-hook on each parameter's gradient
// accumulator copies the fresh gradient into its bucket, and the bucket's all-reduce is
// launched the moment its last gradient arrives. Buckets are launched strictly in index
// order, so every rank issues the same collectives in the same order even when its
// autograd engine finishes parameters in another order (or some not at all).
#include "dist.h"

#include <ATen/core/grad_mode.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

#include <memory>
#include <mutex>

namespace {

struct SyncBucket {
  ct::Bucket params;  // indices into State::params
  at::Tensor flat;
  size_t pending = 0;  // parameters still without this step's gradient
  c10::intrusive_ptr<c10d::Work> work;
};

struct State {
  std::mutex mu;
  c10::intrusive_ptr<ct::Comm> comm;
  std::chrono::milliseconds timeout;
  int world = 1;
  std::vector<at::Tensor> params;
  std::vector<size_t> bucket_of;
  std::vector<int64_t> offset;  // of each parameter inside its bucket's flat buffer
  std::vector<bool> ready;
  std::vector<SyncBucket> buckets;
  size_t next = 0;  // buckets [0, next) are launched this step
  bool armed = false;
  int launched_early = 0;
  std::string error;  // the first failure inside a hook this step

  at::Tensor slot(size_t i) {
    const auto &p = params[i];
    return buckets[bucket_of[i]].flat.narrow(0, offset[i], p.numel()).view(p.sizes());
  }

  // The gradient as accumulated so far (earlier micro-batches included), or zeros for a
  // parameter this rank did not use.
  void copy_in(size_t i) {
    at::NoGradGuard no_grad;
    const auto &g = params[i].grad();
    if (!g.defined()) {
      slot(i).zero_();
      return;
    }
    if (g.is_sparse()) throw std::invalid_argument("parameter " + std::to_string(i) + " has a sparse gradient");
    slot(i).copy_(g);
  }

  void launch(size_t k) {
    auto &b = buckets[k];
    // Dividing first keeps half-precision sums in range; for 2^n ranks it is exact.
    b.flat.div_(world);
    std::vector<at::Tensor> v{b.flat};
    b.work = comm->allreduce(v);
  }

  void launch_ready() {
    while (next < buckets.size() && buckets[next].pending == 0) launch(next++);
  }

  void mark_ready(size_t i) {
    std::lock_guard<std::mutex> lock(mu);
    if (!armed || !error.empty()) return;
    try {
      if (ready[i])
        throw std::runtime_error("parameter " + std::to_string(i) +
                                 " got a second gradient between Prepare and Finish: run one backward per step, "
                                 "and accumulate earlier micro-batches before Prepare");
      ready[i] = true;
      copy_in(i);
      auto &b = buckets[bucket_of[i]];
      if (--b.pending == 0) {
        size_t before = next;
        launch_ready();
        launched_early += static_cast<int>(next - before);
      }
    } catch (const c10::Error &e) {
      error = e.what_without_backtrace();
    } catch (const std::exception &e) {
      error = e.what();
    }
  }
};

// Called by the autograd engine after it has accumulated the parameter's gradient. It
// holds the state weakly: the accumulator may outlive the sync object.
struct ReadyHook : torch::autograd::FunctionPostHook {
  ReadyHook(std::weak_ptr<State> st, size_t index) : st(std::move(st)), index(index) {}
  torch::autograd::variable_list operator()(const torch::autograd::variable_list &outputs,
                                            const torch::autograd::variable_list &) override {
    if (auto s = st.lock()) s->mark_ready(index);
    return outputs;
  }
  std::weak_ptr<State> st;
  size_t index;
};

// A few numbers that differ when ranks register different parameter lists.
std::vector<int64_t> signature(const State &s) {
  uint64_t h = 1469598103934665603ull;
  auto mix = [&](uint64_t v) { h = (h ^ v) * 1099511628211ull; };
  int64_t numel = 0;
  for (const auto &p : s.params) {
    mix(static_cast<uint64_t>(p.scalar_type()));
    for (auto d : p.sizes()) mix(static_cast<uint64_t>(d));
    numel += p.numel();
  }
  return {static_cast<int64_t>(s.params.size()), numel, static_cast<int64_t>(s.buckets.size()),
          static_cast<int64_t>(h >> 1)};
}

}  // namespace

struct ct_grad_sync_s {
  std::shared_ptr<State> st;
  // The engine keeps gradient accumulators only while a graph uses them; holding them
  // keeps the hooks registered across steps.
  std::vector<std::shared_ptr<torch::autograd::Node>> accumulators;
  std::vector<uintptr_t> hooks;

  ~ct_grad_sync_s() {
    for (size_t i = 0; i < accumulators.size(); i++) accumulators[i]->del_post_hook(hooks[i]);
  }
};

extern "C" {

ct_error ct_grad_sync_new(ct_pg pg, const ct_tensor *handles, int n, int64_t bucket_bytes, ct_grad_sync *out) {
  CT_TRY({
    if (n <= 0) throw std::invalid_argument("no parameters to synchronise");
    if (bucket_bytes <= 0)
      throw std::invalid_argument("bucket size must be positive, got " + std::to_string(bucket_bytes) + " bytes");
    auto st = std::make_shared<State>();
    st->comm = pg->comm;
    st->timeout = pg->timeout;
    st->world = pg->size;
    for (int i = 0; i < n; i++) {
      const auto &p = handles[i]->t;
      if (!p.requires_grad() || !p.is_leaf())
        throw std::invalid_argument("parameter " + std::to_string(i) + " is not a leaf tensor that requires grad");
      if (!p.is_floating_point())
        throw std::invalid_argument("parameter " + std::to_string(i) + " is not floating point");
      for (int j = 0; j < i; j++)
        if (handles[j]->t.is_same(p))
          throw std::invalid_argument("parameter " + std::to_string(i) + " is the same tensor as parameter " +
                                      std::to_string(j));
      st->params.push_back(p);
    }
    std::vector<size_t> order(st->params.size());
    for (size_t i = 0; i < order.size(); i++) order[i] = order.size() - 1 - i;
    auto plan = ct::plan_buckets(st->params, order, bucket_bytes);
    st->bucket_of.resize(n);
    st->offset.resize(n);
    st->ready.assign(n, false);
    for (size_t k = 0; k < plan.size(); k++) {
      SyncBucket b;
      b.params = plan[k];
      int64_t off = 0;
      for (size_t i : b.params) {
        st->bucket_of[i] = k;
        st->offset[i] = off;
        off += st->params[i].numel();
      }
      b.flat = at::zeros({off}, st->params[b.params.front()].options().requires_grad(false));
      st->buckets.push_back(std::move(b));
    }

    auto mine = signature(*st);
    auto theirs = at::tensor(mine, at::TensorOptions().dtype(at::kLong)).to(st->params[0].device());
    std::vector<at::Tensor> v{theirs};
    ct::wait(pg->comm->broadcast(v), pg->timeout, "grad sync: compare the parameter lists with rank 0");
    auto got = theirs.cpu();
    const int64_t *r0 = got.data_ptr<int64_t>();
    if (!std::equal(mine.begin(), mine.end(), r0))
      throw std::invalid_argument("grad sync: rank " + std::to_string(pg->rank) + " registered " +
                                  std::to_string(mine[0]) + " parameters (" + std::to_string(mine[1]) + " elements, " +
                                  std::to_string(mine[2]) + " buckets) but rank 0 registered " +
                                  std::to_string(r0[0]) + " (" + std::to_string(r0[1]) + " elements, " +
                                  std::to_string(r0[2]) + " buckets)" + (mine[3] != r0[3] ? ", or other shapes" : "") +
                                  ": every rank must register the same parameters in the same order");

    auto g = std::make_unique<ct_grad_sync_s>();
    g->st = st;
    for (int i = 0; i < n; i++) {
      auto acc = torch::autograd::impl::grad_accumulator(st->params[i]);
      if (!acc) throw std::invalid_argument("parameter " + std::to_string(i) + " has no gradient accumulator");
      g->hooks.push_back(acc->add_post_hook(std::make_unique<ReadyHook>(st, static_cast<size_t>(i))));
      g->accumulators.push_back(std::move(acc));
    }
    *out = g.release();
  })
}

void ct_grad_sync_free(ct_grad_sync g) { delete g; }

int ct_grad_sync_buckets(ct_grad_sync g) { return static_cast<int>(g->st->buckets.size()); }

ct_error ct_grad_sync_prepare(ct_grad_sync g) {
  CT_TRY({
    auto &s = *g->st;
    std::lock_guard<std::mutex> lock(s.mu);
    if (s.armed) throw std::logic_error("grad sync: Prepare called twice without Finish");
    s.ready.assign(s.params.size(), false);
    for (auto &b : s.buckets) {
      b.pending = b.params.size();
      b.work.reset();
    }
    s.next = 0;
    s.launched_early = 0;
    s.error.clear();
    s.armed = true;
  })
}

ct_error ct_grad_sync_finish(ct_grad_sync g, int *launched_early, double *wait_s) {
  CT_TRY({
    auto &s = *g->st;
    std::lock_guard<std::mutex> lock(s.mu);
    if (!s.armed) throw std::logic_error("grad sync: Finish called without Prepare");
    s.armed = false;
    if (!s.error.empty()) throw std::runtime_error("grad sync during backward: " + s.error);
    // Buckets with a parameter the backward pass did not reach go now, still in order.
    for (size_t k = s.next; k < s.buckets.size(); k++) {
      for (size_t i : s.buckets[k].params)
        if (!s.ready[i]) s.copy_in(i);
      s.launch(k);
    }
    s.next = s.buckets.size();
    auto t0 = std::chrono::steady_clock::now();
    for (size_t k = 0; k < s.buckets.size(); k++)
      ct::wait(s.buckets[k].work, s.timeout,
               "grad sync: all-reduce of bucket " + std::to_string(k + 1) + "/" + std::to_string(s.buckets.size()));
    *wait_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    at::NoGradGuard no_grad;
    for (size_t i = 0; i < s.params.size(); i++) {
      auto &p = s.params[i];
      auto avg = s.slot(i);
      if (p.grad().defined())
        p.mutable_grad().copy_(avg);
      else
        p.mutable_grad() = avg.clone();
    }
    *launched_early = s.launched_early;
  })
}

}  // extern "C"
