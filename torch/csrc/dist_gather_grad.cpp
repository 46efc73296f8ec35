// An all-gather that gradients flow back through, as BLIP's GatherLayer
// (all_gather_with_grad): forward concatenates every rank's tensor in rank order; the
// backward all-reduces (sums) the gradient of the result across ranks and hands each
// rank its own rows. So a loss on one rank that uses another rank's rows sends that
// rank the gradient, and after the gradients are averaged every rank holds the
// gradient of the mean of all ranks' losses.
//
// The backward issues a collective: every rank's backward pass must reach it, in the
// same order among its other collectives (the autograd engine runs a CPU graph on the
// thread that called backward, in an order fixed by the graph, which is the same on
// every rank of a data-parallel job).
#include <torch/csrc/autograd/custom_function.h>

#include "dist.h"

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

at::Tensor gather_rows(ct_pg pg, const at::Tensor &x) {
  auto in = x.detach().contiguous();
  auto sizes = in.sizes().vec();
  int64_t rows = sizes[0];
  sizes[0] = rows * pg->size;
  auto res = at::empty(sizes, in.options());
  std::vector<std::vector<at::Tensor>> outs(1);
  for (int r = 0; r < pg->size; r++) outs[0].push_back(res.narrow(0, r * rows, rows));
  std::vector<at::Tensor> ins{in};
  ct::wait(pg->comm->allgather(outs, ins), pg->timeout,
           "all-gather (with gradient) of " + std::to_string(ct::nbytes(in)) + " bytes");
  return res;
}

struct GatherWithGrad : public torch::autograd::Function<GatherWithGrad> {
  static at::Tensor forward(AutogradContext *ctx, const at::Tensor &x, int64_t pg_addr) {
    ctx->saved_data["pg"] = pg_addr;
    ctx->saved_data["rows"] = x.size(0);
    return gather_rows(reinterpret_cast<ct_pg>(pg_addr), x);
  }

  static variable_list backward(AutogradContext *ctx, variable_list grads) {
    auto pg = reinterpret_cast<ct_pg>(ctx->saved_data["pg"].toInt());
    int64_t rows = ctx->saved_data["rows"].toInt();
    at::Tensor g = grads[0].defined() ? grads[0].contiguous().clone() : at::Tensor();
    if (!g.defined()) throw std::runtime_error("all-gather with gradient: no gradient reached the result");
    std::vector<at::Tensor> v{g};
    c10d::AllreduceOptions opts;
    opts.reduceOp = c10d::ReduceOp::SUM;
    ct::wait(pg->comm->allreduce(v, opts), pg->timeout,
             "all-reduce of an all-gather's gradient (" + std::to_string(ct::nbytes(g)) + " bytes)");
    return {g.narrow(0, pg->rank * rows, rows), at::Tensor()};
  }
};

}  // namespace

extern "C" {

ct_error ct_pg_all_gather_with_grad(ct_pg pg, ct_tensor x, ct_tensor *out) {
  CT_TRY({
    if (x->t.dim() == 0) throw std::invalid_argument("all-gather needs a tensor with a first dimension, got a scalar");
    *out = ct::wrap(GatherWithGrad::apply(x->t, reinterpret_cast<int64_t>(pg)));
  })
}

}  // extern "C"
