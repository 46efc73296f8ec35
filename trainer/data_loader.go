package trainer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
	"time"

	"github.com/capfilt/capfilt/blip/tokenizer"
	"github.com/capfilt/capfilt/imageproc"
	"github.com/capfilt/capfilt/shards"
)

// LoaderConfig sets how one rank turns the dataset into batches.
type LoaderConfig struct {
	BatchSize int
	// Transform is the train-time augmentation (imageproc.NewTrainTransform); its Size
	// is the image size of every batch.
	Transform imageproc.TrainTransform
	// NoAugment replaces the augmentation by the inference resize to Transform.Size
	// (for evaluation sets).
	NoAugment bool
	Seed      uint64
	Rank      int // this rank, 0 ≤ Rank < World
	World     int // ranks sharing the data (default 1)
	Workers   int // decode and augment goroutines (default GOMAXPROCS)
	Prefetch  int // batches prepared ahead of the step (default 4)
	// ShuffleBuffer is the number of samples the shuffle draws from (default 2000); a
	// negative value reads the files in order and unshuffled.
	ShuffleBuffer int
	ImageLimits   imageproc.ImageLimits
	// MaxImageBytes bounds a COCO image file (default shards.DefaultMaxMemberBytes).
	MaxImageBytes int64
}

// DefaultShuffleBuffer is the shuffle buffer's default size in samples.
const DefaultShuffleBuffer = 2000

func (c LoaderConfig) withDefaults() LoaderConfig {
	if c.World == 0 {
		c.World = 1
	}
	if c.Workers <= 0 {
		c.Workers = runtime.GOMAXPROCS(0)
	}
	if c.Prefetch <= 0 {
		c.Prefetch = 4
	}
	if c.ShuffleBuffer == 0 {
		c.ShuffleBuffer = DefaultShuffleBuffer
	}
	if c.MaxImageBytes <= 0 {
		c.MaxImageBytes = shards.DefaultMaxMemberBytes
	}
	return c
}

func (c LoaderConfig) validate() error {
	switch {
	case c.BatchSize <= 0:
		return fmt.Errorf("loader: batch size %d is not positive", c.BatchSize)
	case c.World <= 0 || c.Rank < 0 || c.Rank >= c.World:
		return fmt.Errorf("loader: rank %d of world %d", c.Rank, c.World)
	case c.NoAugment && c.Transform.Size <= 0:
		return fmt.Errorf("loader: image size %d is not positive", c.Transform.Size)
	case c.NoAugment:
		return nil
	}
	return c.Transform.Validate()
}

func (c LoaderConfig) transformName() string {
	t := c.Transform
	if c.NoAugment {
		return fmt.Sprintf("resize %d", t.Size)
	}
	return fmt.Sprintf("train %d scale %v ratio %v randaugment %d", t.Size, t.Scale, t.Ratio, t.Augment.N)
}

// Decode-time skip reasons, in the pipeline's vocabulary (shards.Skip*).
const (
	SkipCorruptImage  = shards.SkipCorruptImage
	SkipTooManyPixels = shards.SkipTooManyPixels
	SkipMissingImage  = shards.SkipMissingImage
	SkipEmptyCaption  = shards.SkipEmptyCaption
	SkipImageTooLarge = shards.SkipMemberTooLarge
)

// EpochStats account for one rank's epoch so far.
type EpochStats struct {
	Epoch    int              `json:"epoch"`
	Rank     int              `json:"rank"`
	Batches  int              `json:"batches"`
	Samples  int64            `json:"samples"`  // samples in those batches
	Consumed int64            `json:"consumed"` // order entries taken: samples + skipped
	Skipped  map[string]int64 `json:"skipped"`  // bad samples by reason (resumed counts included)
	Passes   int              `json:"passes"`   // times the order was begun (1 unless bad samples left it short)
	// Decoded counts the images this iterator decoded, the read-ahead past the epoch's
	// last batch included; a resume replays the order up to its position without
	// decoding.
	Decoded int64 `json:"decoded"`
	// Wait is the time Next spent waiting for a batch that was not ready.
	Wait time.Duration `json:"wait_ns"`
}

// Epoch starts one rank's epoch. With from (a Batch's Position saved by a checkpoint)
// it resumes after the batch that position belongs to; from must come from the same
// data and settings. The iterator yields StepsPerEpoch batches, then io.EOF.
func (d *Dataset) Epoch(ctx context.Context, epoch int, cfg LoaderConfig, from *DataPosition) (*EpochIterator, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	steps := d.StepsPerEpoch(cfg.World, cfg.BatchSize)
	if steps == 0 {
		return nil, fmt.Errorf("loader: %d samples cannot fill one batch of %d on each of %d ranks", d.total, cfg.BatchSize, cfg.World)
	}
	start := DataPosition{Epoch: epoch, Dataset: d.finger, Seed: cfg.Seed, Rank: cfg.Rank, World: cfg.World,
		BatchSize: cfg.BatchSize, Shuffle: cfg.ShuffleBuffer, Transform: cfg.transformName(), Skipped: map[string]int64{}}
	if from != nil {
		if err := start.matches(*from); err != nil {
			return nil, err
		}
		if from.Step > steps || from.Step < 0 {
			return nil, fmt.Errorf("resume: position at step %d of an epoch of %d", from.Step, steps)
		}
		start = from.clone()
		if start.Skipped == nil {
			start.Skipped = map[string]int64{}
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	it := &EpochIterator{d: d, cfg: cfg, epoch: epoch, steps: steps, cancel: cancel,
		out: make(chan batchResult, cfg.Prefetch), pos: start, firstDecoded: math.MaxInt64}
	it.stats = EpochStats{Epoch: epoch, Rank: cfg.Rank, Batches: start.Step, Consumed: start.Consumed,
		Samples: int64(start.Step) * int64(cfg.BatchSize), Skipped: maps.Clone(start.Skipped)}
	if start.Step == steps {
		close(it.out)
		return it, nil
	}
	it.run(ctx, start)
	return it, nil
}

func (p DataPosition) matches(o DataPosition) error {
	type fields struct {
		epoch, rank, world, batch, shuffle int
		seed                               uint64
		data, transform                    string
	}
	want := fields{p.Epoch, p.Rank, p.World, p.BatchSize, p.Shuffle, p.Seed, p.Dataset, p.Transform}
	got := fields{o.Epoch, o.Rank, o.World, o.BatchSize, o.Shuffle, o.Seed, o.Dataset, o.Transform}
	if want != got {
		return fmt.Errorf("resume: the saved data position (epoch %d, rank %d/%d, batch %d, shuffle %d, seed %d, data %s, %s) does not match this run (epoch %d, rank %d/%d, batch %d, shuffle %d, seed %d, data %s, %s)",
			got.epoch, got.rank, got.world, got.batch, got.shuffle, got.seed, got.data, got.transform,
			want.epoch, want.rank, want.world, want.batch, want.shuffle, want.seed, want.data, want.transform)
	}
	return nil
}

// EpochIterator delivers one rank's batches of an epoch, prepared ahead by a pool of
// decode workers. It is used from one goroutine.
type EpochIterator struct {
	d      *Dataset
	cfg    LoaderConfig
	epoch  int
	steps  int
	cancel context.CancelFunc
	out    chan batchResult
	wg     sync.WaitGroup
	spans  [][]span // this rank's share of every source
	pos    DataPosition

	mu    sync.Mutex
	stats EpochStats
	err   error
	// firstDecoded is the smallest order position decoded (tests check that a resume
	// decodes nothing before its position).
	firstDecoded int64
}

type batchResult struct {
	b   *Batch
	err error
}

// Steps is the number of batches the epoch has.
func (it *EpochIterator) Steps() int { return it.steps }

// Next returns the next batch, io.EOF after the epoch's last, or the error that
// stopped the stream (a file that cannot be read, a source that changed).
func (it *EpochIterator) Next() (*Batch, error) {
	if it.err != nil {
		return nil, it.err
	}
	var r batchResult
	var ok bool
	select {
	case r, ok = <-it.out:
	default:
		t0 := time.Now()
		r, ok = <-it.out
		it.mu.Lock()
		it.stats.Wait += time.Since(t0)
		it.mu.Unlock()
	}
	switch {
	case !ok:
		it.err = io.EOF
	case r.err != nil:
		it.err = r.err
	default:
		it.pos = r.b.Position
		return r.b, nil
	}
	it.Close()
	return nil, it.err
}

// Position is the data position after the last batch Next returned.
func (it *EpochIterator) Position() DataPosition { return it.pos.clone() }

// Stats returns the epoch's counts so far.
func (it *EpochIterator) Stats() EpochStats {
	it.mu.Lock()
	defer it.mu.Unlock()
	s := it.stats
	s.Skipped = maps.Clone(s.Skipped)
	return s
}

// Close stops the workers; it is safe to call more than once.
func (it *EpochIterator) Close() error {
	it.cancel()
	for range it.out {
	}
	it.wg.Wait()
	return nil
}

// decoded is a worker's result for one order entry.
type decoded struct {
	s      streamed
	pixels []float32 // nil when skipped
	text   string
	source string
	skip   string
	err    error
}

func (it *EpochIterator) run(ctx context.Context, start DataPosition) {
	cfg := it.cfg
	tokens := make(chan struct{}, cfg.Prefetch*cfg.BatchSize+2*cfg.Workers)
	work := make(chan streamed)
	results := make(chan decoded, cap(tokens))
	per := 3 * cfg.Transform.Size * cfg.Transform.Size
	pool := &sync.Pool{New: func() any { return make([]float32, per) }}
	spans := it.d.rankSpans(cfg.Seed, it.epoch, cfg.Rank, cfg.World, cfg.ShuffleBuffer > 0)
	it.spans = spans

	var workers sync.WaitGroup
	it.wg.Add(1)
	go func() { // the order, read and shuffled
		defer it.wg.Done()
		defer close(work)
		seeds := func(pass int, salt uint64) *rand.Rand {
			return seededRand(cfg.Seed, uint64(it.epoch), uint64(cfg.Rank), uint64(pass), salt)
		}
		err := it.d.stream(ctx, spans, cfg.ShuffleBuffer, seeds, start.Consumed, func(s streamed) error {
			select {
			case tokens <- struct{}{}:
			case <-ctx.Done():
				return ctx.Err()
			}
			select {
			case work <- s:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
		if err != nil && ctx.Err() == nil {
			select {
			case results <- decoded{s: streamed{seq: -1}, err: fmt.Errorf("epoch %d rank %d: %w", it.epoch, cfg.Rank, err)}:
			case <-ctx.Done():
			}
		}
	}()
	for range cfg.Workers {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for s := range work {
				r := it.decode(ctx, s, pool)
				select {
				case results <- r:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	it.wg.Add(1)
	go func() {
		defer it.wg.Done()
		workers.Wait()
	}()
	it.wg.Add(1)
	go func() {
		defer it.wg.Done()
		defer close(it.out)
		it.assemble(ctx, start.clone(), tokens, results, pool)
	}()
}

// assemble puts the workers' results back in order and fills the batches.
func (it *EpochIterator) assemble(ctx context.Context, pos DataPosition, tokens chan struct{}, results chan decoded, pool *sync.Pool) {
	cfg := it.cfg
	size := cfg.Transform.Size
	per := 3 * size * size
	pending := map[int64]decoded{}
	next := pos.Consumed
	// A pass is checked for good samples only when seen from its start (a resumed
	// stream may begin near the end of one).
	pass, goodInPass, wholePass := -1, 0, false
	var b *Batch
	send := func(r batchResult) bool {
		select {
		case it.out <- r:
			return true
		case <-ctx.Done():
			return false
		}
	}
	for pos.Step < it.steps {
		var r decoded
		var ok bool
		if r, ok = pending[next]; ok {
			delete(pending, next)
		} else {
			select {
			case r = <-results:
			case <-ctx.Done():
				return
			}
			if r.err != nil && r.s.seq < 0 {
				send(batchResult{err: r.err})
				return
			}
			if r.s.seq != next {
				pending[r.s.seq] = r
				continue
			}
		}
		<-tokens
		next++
		if r.err != nil {
			send(batchResult{err: r.err})
			return
		}
		if r.s.pass != pass {
			if wholePass && goodInPass == 0 {
				send(batchResult{err: fmt.Errorf("epoch %d rank %d: no usable sample in a whole pass over this rank's share (skipped: %v)", it.epoch, cfg.Rank, pos.Skipped)})
				return
			}
			wholePass = pass >= 0
			pass, goodInPass = r.s.pass, 0
			it.mu.Lock()
			it.stats.Passes = max(it.stats.Passes, pass+1)
			it.mu.Unlock()
		}
		pos.Consumed = next
		if r.skip != "" {
			pos.Skipped[r.skip]++
			it.mu.Lock()
			it.stats.Skipped[r.skip]++
			it.stats.Consumed = next
			it.mu.Unlock()
			continue
		}
		goodInPass++
		if b == nil {
			b = &Batch{ImageSize: size, Pixels: make([]float32, 0, cfg.BatchSize*per)}
		}
		b.Pixels = append(b.Pixels, r.pixels...)
		pool.Put(r.pixels)
		c := r.s.c
		b.Texts = append(b.Texts, r.text)
		b.ImageIDs = append(b.ImageIDs, c.imageID)
		b.Keys = append(b.Keys, c.key)
		b.Sources = append(b.Sources, r.source)
		b.SampleIDs = append(b.SampleIDs, c.id)
		if b.Len() < cfg.BatchSize {
			continue
		}
		pos.Step++
		b.Position = pos.clone()
		it.mu.Lock()
		it.stats.Batches, it.stats.Consumed = pos.Step, next
		it.stats.Samples += int64(b.Len())
		it.mu.Unlock()
		if !send(batchResult{b: b}) {
			return
		}
		b = nil
	}
}

// decode turns one order entry into a sample: its caption drawn and cleaned, its
// image read, decoded and augmented. A bad sample comes back with its skip reason; an
// error is only for what is not the sample's fault (a store that fails).
func (it *EpochIterator) decode(ctx context.Context, s streamed, pool *sync.Pool) decoded {
	cfg := it.cfg
	c := s.c
	r := decoded{s: s}
	var texts []captionText
	for _, ct := range c.captions {
		if t := tokenizer.PreCaption(ct.text, it.d.opts.MaxWords); t != "" {
			texts = append(texts, captionText{text: t, source: ct.source})
		}
	}
	if len(texts) == 0 {
		r.skip = SkipEmptyCaption
		return r
	}
	pick := texts[0]
	if len(texts) > 1 {
		pick = texts[seededRand(cfg.Seed, uint64(it.epoch), uint64(s.pass), uint64(c.id), saltCaption).IntN(len(texts))]
	}
	r.text, r.source = pick.text, pick.source
	data := c.image
	if data == nil {
		var skip string
		var err error
		if data, skip, err = it.readImageFile(ctx, c.imageURL); err != nil || skip != "" {
			r.skip, r.err = skip, err
			return r
		}
	}
	img, _, err := imageproc.Decode(data, cfg.ImageLimits)
	it.mu.Lock()
	it.stats.Decoded++
	it.firstDecoded = min(it.firstDecoded, s.seq)
	it.mu.Unlock()
	if err != nil {
		r.skip = SkipCorruptImage
		if errors.Is(err, imageproc.ErrImageTooLarge) {
			r.skip = SkipTooManyPixels
		}
		return r
	}
	px := pool.Get().([]float32)
	if cfg.NoAugment {
		copy(px, imageproc.Normalize(imageproc.ResizeBicubic(img, cfg.Transform.Size, cfg.Transform.Size), imageproc.CLIPMean, imageproc.CLIPStd))
	} else {
		rng := seededRand(cfg.Seed, uint64(it.epoch), uint64(s.pass), uint64(c.id), saltAugment)
		if _, err := cfg.Transform.TransformInto(px, img, rng); err != nil {
			pool.Put(px)
			r.err = err
			return r
		}
	}
	r.pixels = px
	return r
}

func (it *EpochIterator) readImageFile(ctx context.Context, u shards.URL) ([]byte, string, error) {
	rc, err := it.d.store.Open(ctx, u)
	if errors.Is(err, shards.ErrNotFound) {
		return nil, SkipMissingImage, nil
	}
	if err != nil {
		return nil, "", err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, it.cfg.MaxImageBytes+1))
	if err != nil {
		return nil, "", fmt.Errorf("read %s: %w", u, err)
	}
	if int64(len(data)) > it.cfg.MaxImageBytes {
		return nil, SkipImageTooLarge, nil
	}
	return data, "", nil
}
