package main

import (
	"github.com/capfilt/capfilt/torch"
)

// applyThreads sets libtorch's per-op thread count (0 keeps its default, every CPU).
func applyThreads(n int) error {
	if n < 0 {
		return usagef("threads %d: must be 0 (every CPU) or more", n)
	}
	if n > 0 {
		torch.SetNumThreads(n)
	}
	return nil
}
