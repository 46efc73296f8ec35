// Autograd and the AdamW optimiser (libtorch's own implementation).
#include "shim.h"

#include <torch/types.h>
#include <torch/nn/utils/clip_grad.h>
#include <torch/optim/adamw.h>
#include <torch/serialize.h>

struct ct_optimizer_s {
  std::unique_ptr<torch::optim::AdamW> opt;
};

extern "C" {

ct_error ct_set_requires_grad(ct_tensor t, int requires) { CT_TRY(t->t.requires_grad_(requires != 0)) }

ct_error ct_backward(ct_tensor t) { CT_TRY(t->t.backward()) }

ct_error ct_grad(ct_tensor t, ct_tensor *out) {
  CT_TRY({
    const auto &g = t->t.grad();
    *out = g.defined() ? ct::wrap(g) : nullptr;
  })
}

ct_error ct_zero_grad(ct_tensor t) {
  CT_TRY({
    auto &g = t->t.mutable_grad();
    if (g.defined()) g = at::Tensor();
  })
}

ct_error ct_clip_grad_norm(const ct_tensor *params, int n, double max_norm, double *total) {
  CT_TRY({
    std::vector<at::Tensor> ps;
    for (int i = 0; i < n; i++) ps.push_back(params[i]->t);
    *total = torch::nn::utils::clip_grad_norm_(ps, max_norm, 2.0);
  })
}

ct_error ct_adamw_new(const ct_adamw_group *groups, int ngroups, ct_optimizer *out) {
  CT_TRY({
    std::vector<torch::optim::OptimizerParamGroup> gs;
    for (int i = 0; i < ngroups; i++) {
      const auto &g = groups[i];
      std::vector<at::Tensor> ps;
      for (int j = 0; j < g.n; j++) ps.push_back(g.params[j]->t);
      auto opts = std::make_unique<torch::optim::AdamWOptions>(g.lr);
      opts->betas(std::make_tuple(g.beta1, g.beta2)).eps(g.eps).weight_decay(g.weight_decay);
      gs.emplace_back(std::move(ps), std::move(opts));
    }
    // The defaults only matter for groups added later; every group above has its own options.
    torch::optim::AdamWOptions defaults(ngroups > 0 ? groups[0].lr : 1e-3);
    auto o = new ct_optimizer_s;
    o->opt = std::make_unique<torch::optim::AdamW>(std::move(gs), defaults);
    *out = o;
  })
}

void ct_optimizer_free(ct_optimizer o) { delete o; }

ct_error ct_optimizer_step(ct_optimizer o) { CT_TRY(o->opt->step()) }

ct_error ct_optimizer_zero_grad(ct_optimizer o) { CT_TRY(o->opt->zero_grad()) }

ct_error ct_optimizer_set_lr(ct_optimizer o, int group, double lr) {
  CT_TRY({
    auto &groups = o->opt->param_groups();
    if (group < 0 || group >= static_cast<int>(groups.size()))
      throw std::invalid_argument("no parameter group " + std::to_string(group));
    static_cast<torch::optim::AdamWOptions &>(groups[group].options()).lr(lr);
  })
}

ct_error ct_optimizer_save(ct_optimizer o, const char *path) {
  CT_TRY({
    torch::serialize::OutputArchive ar;
    o->opt->save(ar);
    ar.save_to(path);
  })
}

ct_error ct_optimizer_load(ct_optimizer o, const char *path) {
  CT_TRY({
    torch::serialize::InputArchive ar;
    ar.load_from(path);
    o->opt->load(ar);
  })
}

}  // extern "C"
