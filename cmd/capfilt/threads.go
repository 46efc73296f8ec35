package main

import (
	"os"
	"syscall"

	"github.com/capfilt/capfilt/torch"
)

// applyThreads sets libtorch's and OpenBLAS's per-op threads (0 keeps the default: matmuls
// and ops over 2^18 elements on every CPU, other ops on the calling thread). A positive
// n is the most any op uses, the bulk class (torch.SetBulkThreads) included.
func applyThreads(n int) {
	if n > 0 {
		torch.SetNumThreads(n)
		torch.SetBulkThreads(n)
	}
}

// ompWaitPolicy is the OpenMP wait policy capfilt runs under unless the user chose one.
const ompWaitPolicy = "PASSIVE"

// passiveOpenMP runs capfilt again under OMP_WAIT_POLICY=PASSIVE when the environment
// names no policy. libgomp, libtorch's OpenMP, reads the policy once, as it is loaded
// before main runs, and by default a thread that finished its share of a parallel
// region spins (sched_yield) for a while: after every op of the bulk class it competes
// for the CPUs with the op-by-op work that follows (measured: a tiny training step at
// half its speed, `capfilt bench train --bench-cases tiny` with and without the
// variable). A passive thread sleeps at once. Exec returns only on failure, and then
// capfilt goes on as it is.
func passiveOpenMP() {
	if _, set := os.LookupEnv("OMP_WAIT_POLICY"); set {
		return
	}
	self, err := os.Executable()
	if err != nil {
		return
	}
	_ = syscall.Exec(self, os.Args, append(os.Environ(), "OMP_WAIT_POLICY="+ompWaitPolicy))
}
