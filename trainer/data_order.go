package trainer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
)

// The epoch's sample order, a pure function of (seed, epoch, rank, world):
//
//  1. the files are permuted (seeded by seed and epoch);
//  2. their samples, concatenated in that order, are cut into world contiguous blocks
//     of N/world (±1): rank r reads block r, so the ranks never overlap and together
//     see every sample once; a rank opens only the files its block touches;
//  3. the block streams through a shuffle buffer (seeded by seed, epoch and rank).
//
// The stream is read as often as a rank needs to fill its StepsPerEpoch batches: bad
// samples (undecodable images, empty captions) are skipped, and when they leave a
// block short, its order is read again from the start ("pass" 1, 2, …), those samples
// getting fresh crops. Each sample's caption draw and augmentation are seeded by
// (seed, epoch, pass, sample id) alone, so they do not depend on rank, order or timing.

// Seed salts of the independent random streams.
const (
	saltFiles uint64 = iota + 1
	saltShuffle
	saltCaption
	saltAugment
)

// mix folds values into one well-spread 64-bit seed (SplitMix64's finaliser per value).
func mix(vals ...uint64) uint64 {
	h := uint64(0x9e3779b97f4a7c15)
	for _, v := range vals {
		h ^= v + 0x9e3779b97f4a7c15 + (h << 6) + (h >> 2)
		h ^= h >> 30
		h *= 0xbf58476d1ce4e5b9
		h ^= h >> 27
		h *= 0x94d049bb133111eb
		h ^= h >> 31
	}
	return h
}

func seededRand(vals ...uint64) *rand.Rand {
	return rand.New(rand.NewPCG(mix(vals...), mix(append(vals, 0xda7a)...)))
}

// span is the part [from, to) of a unit's candidates that a rank reads in an epoch.
type span struct {
	unit     int
	from, to int64
}

// rankSpans lays out rank's block of the epoch's file order.
func (d *Dataset) rankSpans(seed uint64, epoch, rank, world int, shuffleFiles bool) []span {
	order := make([]int, len(d.units))
	for i := range order {
		order[i] = i
	}
	if shuffleFiles {
		order = seededRand(seed, uint64(epoch), saltFiles).Perm(len(d.units))
	}
	lo := d.total * int64(rank) / int64(world)
	hi := d.total * int64(rank+1) / int64(world)
	var spans []span
	var at int64
	for _, ui := range order {
		n := d.units[ui].count
		from, to := max(lo-at, 0), min(hi-at, n)
		if from < to {
			spans = append(spans, span{unit: ui, from: from, to: to})
		}
		at += n
	}
	return spans
}

// streamed is one entry of a rank's sample order.
type streamed struct {
	seq  int64 // position in the order, counting every pass
	pass int
	c    candidate
}

// stream reads the rank's spans pass after pass through the shuffle buffer and hands
// every entry from seq start on to emit, until ctx ends or emit fails.
func (d *Dataset) stream(ctx context.Context, spans []span, shuffle int, shuffleSeed func(pass int) *rand.Rand,
	start int64, emit func(streamed) error) error {
	seq := int64(0)
	for pass := 0; ; pass++ {
		var rng *rand.Rand
		if shuffle > 0 {
			rng = shuffleSeed(pass)
		}
		buf := make([]candidate, 0, max(shuffle, 0))
		out := func(c candidate) error {
			s := streamed{seq: seq, pass: pass, c: c}
			seq++
			if s.seq < start {
				return nil // replayed to resume: never decoded
			}
			return emit(s)
		}
		n := 0
		for _, sp := range spans {
			err := d.readSpan(ctx, sp, func(c candidate) error {
				n++
				if shuffle <= 0 {
					return out(c)
				}
				if len(buf) < shuffle {
					buf = append(buf, c)
					return nil
				}
				j := rng.IntN(shuffle)
				prev := buf[j]
				buf[j] = c
				return out(prev)
			})
			if err != nil {
				return err
			}
		}
		for len(buf) > 0 {
			j := rng.IntN(len(buf))
			c := buf[j]
			buf[j] = buf[len(buf)-1]
			buf = buf[:len(buf)-1]
			if err := out(c); err != nil {
				return err
			}
		}
		if n == 0 {
			return errors.New("this rank's share of the epoch is empty")
		}
	}
}

// readSpan hands the candidates [from, to) of one unit to fn.
func (d *Dataset) readSpan(ctx context.Context, sp span, fn func(candidate) error) (err error) {
	u := &d.units[sp.unit]
	r, err := d.openUnit(ctx, u)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, r.close()) }()
	if err := skipTo(r, sp.from); err != nil {
		return fmt.Errorf("%s: skip to sample %d: %w", u.url, sp.from, err)
	}
	for i := sp.from; i < sp.to; i++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		c, err := r.next()
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("%s: ended at sample %d of %d indexed", u.url, i, u.count)
		}
		if err != nil {
			return err
		}
		if err := fn(c); err != nil {
			return err
		}
	}
	return nil
}
