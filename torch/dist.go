package torch

// #include <stdlib.h>
// #include "capfilt_torch.h"
import "C"

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unsafe"
)

// Backend is the c10d communication library a ProcessGroup runs on.
type Backend int

const (
	Gloo Backend = iota // CPU tensors, over TCP
	NCCL                // CUDA tensors; needs a shim built against a CUDA libtorch with NCCL
)

func (b Backend) String() string {
	switch b {
	case Gloo:
		return "gloo"
	case NCCL:
		return "nccl"
	}
	return fmt.Sprintf("Backend(%d)", int(b))
}

// DistOp combines one tensor across ranks.
type DistOp int

const (
	DistSum DistOp = iota
	DistAvg        // the sum divided by the world size (floating-point tensors only)
	DistMax
	DistMin
)

const (
	// DefaultDistTimeout is torch.distributed's default for every rendezvous step and
	// collective.
	DefaultDistTimeout = 30 * time.Minute
	// DefaultBucketBytes is DDP's default bucket size (bucket_cap_mb=25).
	DefaultBucketBytes int64 = 25 << 20
)

// NCCLCompiled reports whether the shim was built with ProcessGroupNCCL.
func NCCLCompiled() bool { return C.ct_nccl_compiled() != 0 }

// DistConfig is everything NewProcessGroup needs.
type DistConfig struct {
	DistEnv
	Backend Backend
	// Timeout bounds every wait: the rendezvous steps, and each collective. A rank that
	// dies makes the others' next or current collective fail (at once when its sockets
	// close, within Timeout when it hangs). Zero means DefaultDistTimeout.
	Timeout time.Duration
}

// ProcessGroup is this process's membership in a c10d process group.
//
// Every rank must issue the same collectives in the same order (c10d matches them by
// sequence number), so call them from one goroutine. After a collective fails the group
// is unusable: a peer died or the job is out of step; end the process with an error and
// let the launcher restart the job from its last checkpoint.
type ProcessGroup struct {
	pg      C.ct_pg
	rank    int
	size    int
	backend Backend
	timeout time.Duration
}

// NewProcessGroup joins the group: rank 0 hosts a TCPStore at MasterAddr:MasterPort (or
// the launcher's agent does, see DistEnv.AgentStore), every rank connects to it, and the
// backend connects the ranks to each other. It returns once every rank has joined, or
// with an error after cfg.Timeout.
func NewProcessGroup(cfg DistConfig) (*ProcessGroup, error) {
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = DefaultDistTimeout
	}
	if timeout < time.Millisecond {
		return nil, fmt.Errorf("torch: process group: timeout %v is not positive", cfg.Timeout)
	}
	if cfg.MasterAddr == "" {
		return nil, errors.New("torch: process group: no master address")
	}
	addr := C.CString(cfg.MasterAddr)
	defer C.free(unsafe.Pointer(addr))
	ifs := C.CString(strings.Join(cfg.GlooInterfaces, ","))
	defer C.free(unsafe.Pointer(ifs))
	c := C.ct_dist_config{
		master_addr: addr, master_port: C.int(cfg.MasterPort),
		rank: C.int(cfg.Rank), world_size: C.int(cfg.WorldSize),
		agent_store: cBool(cfg.AgentStore), restart_count: C.int(cfg.RestartCount),
		backend: C.int(cfg.Backend), timeout_ms: C.int64_t(timeout.Milliseconds()),
		gloo_interfaces: ifs,
	}
	var pg C.ct_pg
	if err := takeError("process group ("+cfg.Backend.String()+")", C.ct_pg_new(&c, &pg)); err != nil {
		return nil, err
	}
	return &ProcessGroup{pg: pg, rank: cfg.Rank, size: cfg.WorldSize, backend: cfg.Backend, timeout: timeout}, nil
}

// Rank is this process's rank.
func (p *ProcessGroup) Rank() int { return p.rank }

// Size is the world size.
func (p *ProcessGroup) Size() int { return p.size }

// Backend is the communication library of the group.
func (p *ProcessGroup) Backend() Backend { return p.backend }

// Timeout bounds each collective's wait.
func (p *ProcessGroup) Timeout() time.Duration { return p.timeout }

// Close leaves the group. Rank 0 also stops the store the others rendezvoused at.
func (p *ProcessGroup) Close() {
	if p.pg != nil {
		C.ct_pg_free(p.pg)
		p.pg = nil
	}
}

func (p *ProcessGroup) op(name string) string {
	return fmt.Sprintf("%s (rank %d of %d)", name, p.rank, p.size)
}

func (p *ProcessGroup) check() error {
	if p == nil || p.pg == nil {
		return errors.New("torch: process group used after Close")
	}
	return nil
}

func checkBucket(bucketBytes int64) error {
	if bucketBytes <= 0 {
		return fmt.Errorf("torch: bucket size %d bytes is not positive", bucketBytes)
	}
	return nil
}

// AllReduce combines ts across ranks in place: afterwards every rank holds the same
// result. The tensors are packed into contiguous buckets of at most bucketBytes (a
// larger tensor is reduced on its own, without a copy) and all buckets are in flight
// before the first is waited for. No gradient flows through it.
func (p *ProcessGroup) AllReduce(ts []*Tensor, op DistOp, bucketBytes int64) error {
	if err := errors.Join(p.check(), checkBucket(bucketBytes)); err != nil {
		return err
	}
	hs, err := handles(ts)
	if err != nil || len(hs) == 0 {
		return err
	}
	return takeError(p.op("all-reduce"), C.ct_pg_all_reduce(p.pg, &hs[0], C.int(len(hs)), C.int(op), C.int64_t(bucketBytes)))
}

// Broadcast copies root's ts into every other rank's ts, in place, bucketed as
// AllReduce is. Parameters may be broadcast directly (weights from rank 0 at start).
func (p *ProcessGroup) Broadcast(ts []*Tensor, root int, bucketBytes int64) error {
	if err := errors.Join(p.check(), checkBucket(bucketBytes)); err != nil {
		return err
	}
	hs, err := handles(ts)
	if err != nil || len(hs) == 0 {
		return err
	}
	return takeError(p.op("broadcast"), C.ct_pg_broadcast(p.pg, &hs[0], C.int(len(hs)), C.int(root), C.int64_t(bucketBytes)))
}

// AllGather concatenates every rank's x along dimension 0, in rank order; x must have
// the same shape on every rank. It is BLIP's concat_all_gather: no gradient flows
// through it. The result joins x's scope.
func (p *ProcessGroup) AllGather(x *Tensor) *Tensor {
	if err := p.check(); err != nil {
		return errTensor(err)
	}
	if err := x.check(); err != nil {
		return errTensor(err)
	}
	var h C.ct_tensor
	e := C.ct_pg_all_gather(p.pg, x.h, &h)
	return result(p.op("all-gather"), e, h, x)
}

// Barrier returns once every rank has called it.
func (p *ProcessGroup) Barrier() error {
	if err := p.check(); err != nil {
		return err
	}
	return takeError(p.op("barrier"), C.ct_pg_barrier(p.pg))
}
