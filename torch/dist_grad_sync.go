package torch

// #include "capfilt_torch.h"
import "C"

import (
	"errors"
	"time"
)

// GradSync averages the gradients of a fixed parameter list across the ranks of a
// process group, overlapping the all-reduce with the backward pass as DDP does:
//
//	sync, err := torch.NewGradSync(pg, params, torch.DefaultBucketBytes)
//	...
//	sync.Prepare()   // each step
//	loss.Backward()  // buckets are all-reduced as their gradients become ready
//	sync.Finish()    // every .grad now holds the average over ranks
//
// Parameters are packed into buckets in reverse order (a model's last layers get their
// gradients first) and each bucket's all-reduce starts, from an autograd hook on the
// parameters' gradient accumulators, as soon as its last gradient is accumulated.
// Buckets are launched strictly in order, so a bucket with a parameter the graph does
// not reach waits for Finish (and delays those after it). A parameter without a
// gradient on this rank contributes zeros and receives the average.
//
// Backward calls made outside Prepare..Finish only accumulate locally, which is how to
// accumulate micro-batches: backward on all but the last without Prepare, then Prepare,
// the last backward, Finish. Exactly one backward may run between Prepare and Finish.
type GradSync struct {
	s     C.ct_grad_sync
	pg    *ProcessGroup
	last  GradSyncStats
	count int
}

// GradSyncStats describes the last Finish.
type GradSyncStats struct {
	Buckets            int           // buckets in the plan
	LaunchedInBackward int           // buckets whose all-reduce started during backward
	Wait               time.Duration // time Finish waited for the all-reduces
}

// NewGradSync registers params (leaves that require grad, the same list in the same
// order on every rank: checked against rank 0 here, a collective every rank must call).
func NewGradSync(pg *ProcessGroup, params []*Tensor, bucketBytes int64) (*GradSync, error) {
	if err := errors.Join(pg.check(), checkBucket(bucketBytes)); err != nil {
		return nil, err
	}
	hs, err := handles(params)
	if err != nil {
		return nil, err
	}
	if len(hs) == 0 {
		return nil, errors.New("torch: grad sync: no parameters")
	}
	var s C.ct_grad_sync
	if err := takeError(pg.op("grad sync"), C.ct_grad_sync_new(pg.pg, &hs[0], C.int(len(hs)), C.int64_t(bucketBytes), &s)); err != nil {
		return nil, err
	}
	return &GradSync{s: s, pg: pg, count: int(C.ct_grad_sync_buckets(s))}, nil
}

// Buckets is the number of buckets the parameters were packed into.
func (g *GradSync) Buckets() int { return g.count }

func (g *GradSync) check() error {
	if g == nil || g.s == nil {
		return errors.New("torch: grad sync used after Close")
	}
	return nil
}

// Prepare arms the hooks for the next backward pass.
func (g *GradSync) Prepare() error {
	if err := g.check(); err != nil {
		return err
	}
	return takeError(g.pg.op("grad sync prepare"), C.ct_grad_sync_prepare(g.s))
}

// Finish launches the buckets backward did not, waits for all of them (each within the
// group's timeout) and writes the averaged gradients into the parameters' .grad.
func (g *GradSync) Finish() error {
	if err := g.check(); err != nil {
		return err
	}
	var early C.int
	var wait C.double
	if err := takeError(g.pg.op("grad sync finish"), C.ct_grad_sync_finish(g.s, &early, &wait)); err != nil {
		return err
	}
	g.last = GradSyncStats{Buckets: g.count, LaunchedInBackward: int(early), Wait: time.Duration(float64(wait) * float64(time.Second))}
	return nil
}

// LastStep describes the last successful Finish.
func (g *GradSync) LastStep() GradSyncStats { return g.last }

// Close removes the hooks. The parameters and the process group stay.
func (g *GradSync) Close() {
	if g.s != nil {
		C.ct_grad_sync_free(g.s)
		g.s = nil
	}
}
