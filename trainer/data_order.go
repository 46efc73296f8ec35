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
//  1. each source's files are permuted (seeded by seed, epoch and source);
//  2. a source's samples, concatenated in that order, are cut into world contiguous
//     blocks of N_s/world (±1): rank r reads block r of every source, so the ranks
//     never overlap, together see every sample, and each holds every source in
//     proportion; a rank opens only the files its blocks touch, and skips into at most
//     one file per source;
//  3. the rank's blocks are merged at random, each next sample taken from a source
//     with probability its share of what is left (so a batch mixes the sources as a
//     global shuffle would), then streamed through a shuffle buffer (both seeded by
//     seed, epoch, rank and pass).
//
// The stream is read as often as a rank needs to fill its StepsPerEpoch batches: bad
// samples (undecodable images, empty captions) are skipped, and when they leave a
// share short, its order is read again from the start ("pass" 1, 2, …), those samples
// getting fresh crops. Each sample's caption draw and augmentation are seeded by
// (seed, epoch, pass, sample id) alone, so they do not depend on rank, order or timing.

// Seed salts of the independent random streams.
const (
	saltFiles uint64 = iota + 1
	saltShuffle
	saltCaption
	saltAugment
	saltMerge
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

// sourceUnits lists the units of each source, in index order.
func (d *Dataset) sourceUnits() [][]int {
	out := make([][]int, len(d.sources))
	for i, u := range d.units {
		out[u.source] = append(out[u.source], i)
	}
	return out
}

// sourceTotals is the number of samples of each source.
func (d *Dataset) sourceTotals() []int64 {
	out := make([]int64, len(d.sources))
	for _, u := range d.units {
		out[u.source] += u.count
	}
	return out
}

// rankShare is the number of samples rank gets per epoch.
func (d *Dataset) rankShare(rank, world int) int64 {
	var n int64
	for _, total := range d.sourceTotals() {
		n += total*int64(rank+1)/int64(world) - total*int64(rank)/int64(world)
	}
	return n
}

// rankSpans lays out rank's block of each source's file order for an epoch.
func (d *Dataset) rankSpans(seed uint64, epoch, rank, world int, shuffleFiles bool) [][]span {
	totals := d.sourceTotals()
	out := make([][]span, len(d.sources))
	for s, units := range d.sourceUnits() {
		order := units
		if shuffleFiles {
			perm := seededRand(seed, uint64(epoch), uint64(s), saltFiles).Perm(len(units))
			order = make([]int, len(units))
			for i, p := range perm {
				order[i] = units[p]
			}
		}
		lo := totals[s] * int64(rank) / int64(world)
		hi := totals[s] * int64(rank+1) / int64(world)
		var at int64
		for _, ui := range order {
			n := d.units[ui].count
			if from, to := max(lo-at, 0), min(hi-at, n); from < to {
				out[s] = append(out[s], span{unit: ui, from: from, to: to})
			}
			at += n
		}
	}
	return out
}

// streamed is one entry of a rank's sample order.
type streamed struct {
	seq  int64 // position in the order, counting every pass
	pass int
	c    candidate
}

// orderSeeds seed a rank's random merge and shuffle buffer, per pass.
type orderSeeds func(pass int, salt uint64) *rand.Rand

// stream reads the rank's spans pass after pass, merged and through the shuffle
// buffer, and hands every entry from seq start on to emit, until ctx ends or emit
// fails.
func (d *Dataset) stream(ctx context.Context, spans [][]span, shuffle int, seeds orderSeeds, start int64, emit func(streamed) error) error {
	var total int64
	for _, ss := range spans {
		for _, sp := range ss {
			total += sp.to - sp.from
		}
	}
	if total == 0 {
		return errors.New("this rank's share of the epoch is empty")
	}
	seq := int64(0)
	for pass := 0; ; pass++ {
		if err := d.streamPass(ctx, spans, shuffle, seeds, pass, func(c candidate) error {
			s := streamed{seq: seq, pass: pass, c: c}
			seq++
			if s.seq < start {
				return nil // replayed to resume: never decoded
			}
			return emit(s)
		}); err != nil {
			return err
		}
	}
}

func (d *Dataset) streamPass(ctx context.Context, spans [][]span, shuffle int, seeds orderSeeds, pass int, out func(candidate) error) (err error) {
	cursors := make([]*sourceCursor, len(spans))
	var left int64
	for s, ss := range spans {
		cursors[s] = &sourceCursor{d: d, spans: ss}
		for _, sp := range ss {
			cursors[s].left += sp.to - sp.from
		}
		left += cursors[s].left
	}
	defer func() {
		for _, c := range cursors {
			err = errors.Join(err, c.close())
		}
	}()
	merge := seeds(pass, saltMerge)
	var rng *rand.Rand
	var buf []candidate
	if shuffle > 0 {
		rng = seeds(pass, saltShuffle)
		buf = make([]candidate, 0, shuffle)
	}
	for ; left > 0; left-- {
		k := merge.Int64N(left)
		s := 0
		for k >= cursors[s].left {
			k -= cursors[s].left
			s++
		}
		c, err := cursors[s].next(ctx)
		if err != nil {
			return err
		}
		switch {
		case shuffle <= 0:
			err = out(c)
		case len(buf) < shuffle:
			buf = append(buf, c)
		default:
			j := rng.IntN(shuffle)
			buf[j], c = c, buf[j]
			err = out(c)
		}
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
	return nil
}

// sourceCursor reads one source's spans in order, one file open at a time.
type sourceCursor struct {
	d     *Dataset
	spans []span
	i     int        // current span
	r     unitReader // open on spans[i]; nil before it is opened
	at    int64      // next candidate ordinal in spans[i]
	left  int64      // candidates still to read over all spans
}

func (c *sourceCursor) next(ctx context.Context) (candidate, error) {
	if err := ctx.Err(); err != nil {
		return candidate{}, err
	}
	for c.r == nil || c.at >= c.spans[c.i].to {
		if c.r != nil {
			if err := c.close(); err != nil {
				return candidate{}, err
			}
			c.i++
		}
		sp := c.spans[c.i]
		u := &c.d.units[sp.unit]
		r, err := c.d.openUnit(ctx, u)
		if err != nil {
			return candidate{}, err
		}
		c.r, c.at = r, sp.from
		if err := skipTo(r, sp.from); err != nil {
			return candidate{}, fmt.Errorf("%s: skip to sample %d: %w", u.url, sp.from, err)
		}
	}
	cand, err := c.r.next()
	if errors.Is(err, io.EOF) {
		u := &c.d.units[c.spans[c.i].unit]
		return candidate{}, fmt.Errorf("%s: ended at sample %d of %d indexed", u.url, c.at, u.count)
	}
	if err != nil {
		return candidate{}, err
	}
	c.at++
	c.left--
	return cand, nil
}

func (c *sourceCursor) close() error {
	if c.r == nil {
		return nil
	}
	err := c.r.close()
	c.r = nil
	return err
}
