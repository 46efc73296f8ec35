package workers

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/capfilt/capfilt/shards"
)

// BatchSizer holds a worker's model batch size. A batch that runs out of device memory
// is split in halves (recursively) and never fails its shard; the size then drops to the
// largest batch seen to fit below the one that failed (or to the half, before any fit),
// and stays there for the worker's later batches and shards.
type BatchSizer struct {
	mu     sync.Mutex
	size   int
	fit    int // the largest batch seen to run, 0 before any
	failed int // the smallest batch seen to run out of memory, 0 before any
	splits int
}

// NewBatchSizer starts at size.
func NewBatchSizer(size int) *BatchSizer { return &BatchSizer{size: max(size, 1)} }

// Size is the batch size to form now.
func (s *BatchSizer) Size() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.size
}

// Splits is how many batches ran out of memory so far.
func (s *BatchSizer) Splits() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.splits
}

func (s *BatchSizer) set(n int) {
	s.mu.Lock()
	s.size = max(n, 1)
	s.mu.Unlock()
}

// ran records that a batch of n images fit.
func (s *BatchSizer) ran(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n > s.fit && (s.failed == 0 || n < s.failed) {
		s.fit = n
	}
}

// outOfMemory records that a batch of n images did not fit: no later batch is that big.
func (s *BatchSizer) outOfMemory(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.splits++
	if s.failed == 0 || n < s.failed {
		s.failed = n
	}
	next := (n + 1) / 2
	if s.fit > 0 && s.fit < s.failed {
		next = s.fit
	}
	s.size = max(min(s.size, next), 1)
}

// LabelSplitting runs lab on b; when the device runs out of memory it labels the two
// halves instead (and so on down to single images), recording each split in sizer. Only
// a single image that does not fit is an error.
func LabelSplitting(ctx context.Context, lab Labeler, b Batch, sizer *BatchSizer) ([]Labels, error) {
	labels, err := lab.Label(ctx, b)
	if err == nil {
		if len(labels) != b.Len() {
			return nil, fmt.Errorf("model stage returned %d labels for %d images", len(labels), b.Len())
		}
		sizer.ran(b.Len())
		return labels, nil
	}
	if !errors.Is(err, ErrOutOfMemory) {
		return nil, err
	}
	if b.Len() == 1 {
		return nil, fmt.Errorf("image %q alone does not fit the device: %w", b.Keys[0], err)
	}
	sizer.outOfMemory(b.Len())
	half := (b.Len() + 1) / 2
	left, err := LabelSplitting(ctx, lab, b.Slice(0, half), sizer)
	if err != nil {
		return nil, err
	}
	right, err := LabelSplitting(ctx, lab, b.Slice(half, b.Len()), sizer)
	if err != nil {
		return nil, err
	}
	return append(left, right...), nil
}

// FindBatchSize finds the largest batch, up to limit, that the model stage runs without
// running out of memory: it doubles from start until a batch does not fit, then bisects
// between the last size that fit and the first that did not. Probe images are blank and
// probe captions as long as the filter reads; generation runs to its full length on them
// as on real images, so the answer holds for real batches (and a batch that still does
// not fit is split anyway).
func FindBatchSize(ctx context.Context, lab Labeler, start, limit int) (int, error) {
	start, limit = max(start, 1), max(limit, 1)
	try := func(n int) (bool, error) {
		_, err := lab.Label(ctx, probeBatch(n, lab.ImageSize()))
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, ErrOutOfMemory):
			return false, nil
		}
		return false, fmt.Errorf("batch size probe of %d images: %w", n, err)
	}
	fit, failed := 0, limit+1
	for n := min(start, limit); ; n = min(2*n, limit) {
		ok, err := try(n)
		if err != nil {
			return 0, err
		}
		if !ok {
			failed = n
			break
		}
		fit = n
		if n == limit {
			break
		}
	}
	// Bisect between what fit and what did not, down to about an eighth of the size:
	// finer steps cost more probes than they win.
	for lo, hi := fit, failed; hi-lo > max(lo/8, 1); {
		mid := (lo + hi) / 2
		ok, err := try(mid)
		if err != nil {
			return 0, err
		}
		if ok {
			lo, fit = mid, mid
		} else {
			hi = mid
		}
	}
	if fit == 0 {
		return 0, fmt.Errorf("not even one image fits the device: %w", ErrOutOfMemory)
	}
	return fit, nil
}

func probeBatch(n, size int) Batch {
	b := Batch{Pixels: make([]float32, n*3*size*size), Size: size}
	long := strings.TrimSpace(strings.Repeat("a picture of the probe ", 8))
	for i := range n {
		b.Keys = append(b.Keys, fmt.Sprintf("capfilt-batch-probe-%d", i))
		b.Captions = append(b.Captions, []string{long})
		b.Sources = append(b.Sources, shards.SourceWeb)
	}
	return b
}
