package main

import (
	"github.com/capfilt/capfilt/torch"
)

// applyThreads sets libtorch's and OpenBLAS's per-op threads (0 keeps the default: matmuls
// on every CPU, other ops on the calling thread).
func applyThreads(n int) {
	if n > 0 {
		torch.SetNumThreads(n)
	}
}
