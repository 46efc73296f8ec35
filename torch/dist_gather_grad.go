package torch

// #include "capfilt_torch.h"
import "C"

// AllGatherWithGrad is AllGather through which gradients flow, as BLIP's GatherLayer
// (all_gather_with_grad, used by retrieval's negative_all_rank): the backward pass sums
// the gradient of the result over the ranks and gives x this rank's rows of the sum.
// The backward issues an all-reduce, so every rank's backward must reach this tensor
// (ranks of one data-parallel job run the same graph, which keeps the collectives in
// the same order). The result joins x's scope.
func (p *ProcessGroup) AllGatherWithGrad(x *Tensor) *Tensor {
	if err := p.check(); err != nil {
		return errTensor(err)
	}
	if err := x.check(); err != nil {
		return errTensor(err)
	}
	var h C.ct_tensor
	e := C.ct_pg_all_gather_with_grad(p.pg, x.h, &h)
	return result(p.op("all-gather with grad"), e, h, x)
}
