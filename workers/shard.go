package workers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"runtime"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/capfilt/capfilt/pipeline"
	"github.com/capfilt/capfilt/pipeline/spec"
	"github.com/capfilt/capfilt/shards"
)

// ShardTask is one shard to process, with everything the stages need.
type ShardTask struct {
	Job      pipeline.Job
	Settings pipeline.RunSettings
	Labeler  Labeler
	Store    shards.Store
	Sizer    *BatchSizer
	// DecodeWorkers is how many images are decoded at once (default GOMAXPROCS).
	DecodeWorkers int
	// Progress, when set, is told how many samples have been accounted for so far.
	Progress func(read int64)
	Metrics  *Metrics
	WorkerID string
	Version  string
	// Build is the binary's build (VCS revision) the outputs record; empty: the one Go
	// stamped into the binary, else "unknown".
	Build string
}

// item is one sample on its way through the stages.
type item struct {
	s      shards.Sample
	pixels []float32
	width  int
	height int
	skip   string        // why the decoder refused the image ("" when it did not)
	ready  chan struct{} // closed once decoded (or when there is nothing to decode)
}

func (it *item) usable() bool { return it.s.SkipReason == "" && it.skip == "" }

// modelBatch is a run of consecutive items: the usable ones go to the model together.
type modelBatch struct {
	items  []*item
	input  Batch
	labels []Labels // one per usable item
}

// stageTimes adds up the time spent per stage, from several goroutines.
type stageTimes struct{ read, decode, model, write atomic.Int64 }

func (t *stageTimes) add(d *atomic.Int64, since time.Time) { d.Add(int64(time.Since(since))) }

// shardWriter writes the cleaned rows of one shard in the run's output format
// (shards.CleanedWriter for Parquet, shards.WDSWriter for WebDataset). Close finishes the
// file without publishing it.
type shardWriter interface {
	Write(row shards.CleanedRow) error
	Close() error
}

func newShardWriter(w io.Writer, f shards.OutputFormat, meta shards.CleanedMeta, opts shards.CleanedOptions) (shardWriter, error) {
	if f == shards.OutputWDS {
		return shards.NewWDSWriter(w, meta, opts)
	}
	return shards.NewCleanedWriter(w, meta, opts)
}

// ProcessShard runs the stages over one shard and publishes its outputs:
//
//	reader ─▶ decode pool ─▶ batcher ─▶ model (caption + filter) ─▶ writer
//
// Each arrow is a bounded channel, so the model never waits on the reader or the decoder
// while memory stays flat. Items keep input order (a decoded image waits for the ones
// before it), so a retried shard writes the same rows in the same order. The cleaned
// shard (Parquet or WebDataset, by the run's output format) is written through
// Store.Create and published only when whole; on any failure it is aborted, so no
// partial object is ever visible.
func ProcessShard(ctx context.Context, t ShardTask) (pipeline.ShardResult, error) {
	start := time.Now()
	in, out := t.Job.Shard.URL, t.Job.Output
	res := pipeline.ShardResult{Output: shards.OutputURL(out, in, t.Settings.Format()), Stats: shards.StatsURL(out, in)}
	// An earlier attempt killed mid-shard could not abort its writers; what it left
	// unpublished goes now (only dead writers exist: the job is ours).
	for _, u := range []shards.URL{res.Output, res.Stats} {
		if err := t.Store.DiscardUnpublished(ctx, u); err != nil {
			return res, fmt.Errorf("shard %s: %w", t.Job.Shard.URL, err)
		}
	}

	ow, err := t.Store.Create(ctx, res.Output)
	if err != nil {
		return res, err
	}
	defer ow.Abort()
	cw, err := newShardWriter(ow, t.Settings.Format(), cleanedMeta(t), shards.CleanedOptions{
		OmitImages: t.Settings.OmitImages, WithRejected: t.Settings.WithRejected})
	if err != nil {
		return res, fmt.Errorf("shard %s: %w", in, err)
	}
	stats := shards.NewShardStats(in.String(), t.Job.Run)
	run := t.Metrics.forRun(t.Job.Run) // at zero from now on, if no scrape saw the run queued
	var times stageTimes
	splitsBefore := t.Sizer.Splits()

	decoders := t.DecodeWorkers
	if decoders <= 0 {
		decoders = runtime.GOMAXPROCS(0)
	}
	depth := QueueDepth(t.Sizer.Size(), decoders)
	ordered := make(chan *item, depth)
	toDecode := make(chan *item, depth)
	batches := make(chan *modelBatch, 1)
	labeled := make(chan *modelBatch, 1)
	buffers := make(pixelBuffers, 3) // a batch being formed, one queued, one in the model

	g, gctx := errgroup.WithContext(ctx)
	opts := shards.ShardOptions{Columns: t.Settings.Columns, HumanCaptions: t.Settings.HumanCaptions}
	var damage *shards.DamageError
	g.Go(func() error { return readShard(gctx, t.Store, in, opts, ordered, toDecode, &times, &damage) })
	for range decoders {
		g.Go(func() error { decodeImages(gctx, t.Labeler, t.Settings.MaxPixels, toDecode, &times); return nil })
	}
	g.Go(func() error { return formBatches(gctx, t, ordered, batches, buffers) })
	g.Go(func() error { return labelBatches(gctx, t, batches, labeled, buffers, &times) })
	var scores scoreLog
	g.Go(func() error { return writeRows(gctx, t, labeled, cw, stats, &scores, &times) })
	if err := g.Wait(); err != nil {
		return res, err
	}
	if damage != nil {
		stats.RecordDamage(damage)
	}

	began := time.Now()
	if err := cw.Close(); err != nil {
		return res, fmt.Errorf("shard %s: finish %s: %w", in, res.Output, err)
	}
	if err := ow.Close(); err != nil {
		return res, err
	}
	times.add(&times.write, began)
	for stage, d := range map[string]*atomic.Int64{"read": &times.read, "decode": &times.decode, "model": &times.model, "write": &times.write} {
		stats.AddTiming(stage, time.Duration(d.Load()))
	}
	if err := stats.Check(); err != nil {
		return res, err // a bug, never a bad input: every sample must be accounted for
	}
	if err := shards.WriteStats(ctx, t.Store, res.Stats, stats); err != nil {
		return res, err
	}
	run.shardPublished(stats, &scores)
	res.Counts = pipeline.Counts{Read: stats.SamplesRead, Accepted: stats.ImagesKept, Rejected: stats.ImagesRejected,
		Skipped: stats.SamplesSkipped}
	res.BatchSize = t.Sizer.Size()
	res.OOMSplits = t.Sizer.Splits() - splitsBefore
	res.Duration = time.Since(start)
	res.Detail = stats
	return res, nil
}

// readShard streams the shard's samples to the stages. A shard damaged part-way ends
// like a whole one, after its last good sample, with *damage saying where and why.
func readShard(ctx context.Context, store shards.Store, in shards.URL, opts shards.ShardOptions, ordered, toDecode chan<- *item, times *stageTimes,
	damage **shards.DamageError) error {
	defer close(ordered)
	defer close(toDecode)
	r, err := shards.OpenShard(ctx, store, in, opts)
	if err != nil {
		return &inputError{err} // shards names the shard in its errors
	}
	defer r.Close()
	for {
		began := time.Now()
		s, err := r.Next()
		times.add(&times.read, began)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if errors.As(err, damage) {
			return nil
		}
		if err != nil {
			return &inputError{err}
		}
		it := &item{s: s, ready: make(chan struct{})}
		if s.SkipReason != "" {
			close(it.ready)
		}
		select {
		case ordered <- it:
		case <-ctx.Done():
			return ctx.Err()
		}
		if s.SkipReason != "" {
			continue
		}
		select {
		case toDecode <- it:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func decodeImages(ctx context.Context, prep Preparer, maxPixels int64, toDecode <-chan *item, times *stageTimes) {
	for it := range toDecode {
		if ctx.Err() == nil {
			began := time.Now()
			pixels, w, h, err := prep.Prepare(it.s.Image, maxPixels)
			times.add(&times.decode, began)
			switch {
			case errors.Is(err, ErrTooManyPixels):
				it.skip = shards.SkipTooManyPixels
			case err != nil:
				it.skip = shards.SkipCorruptImage
			default:
				it.pixels, it.width, it.height = pixels, w, h
			}
		}
		close(it.ready)
	}
}

// pixelBuffers recycles the batches' pixel buffers (megabytes each): the model stage
// copies them into tensors, so a buffer is free again once its batch is labelled.
type pixelBuffers chan []float32

func (p pixelBuffers) get(n int) []float32 {
	select {
	case b := <-p:
		if cap(b) >= n {
			return b[:0]
		}
	default:
	}
	return make([]float32, 0, n)
}

func (p pixelBuffers) put(b []float32) {
	select {
	case p <- b:
	default:
	}
}

// inputCaptions are a usable sample's captions, to be scored one by one.
func inputCaptions(s shards.Sample) []string {
	if len(s.Captions) == 0 {
		return []string{s.Caption}
	}
	return s.Captions
}

// formBatches groups items in input order into batches of Sizer.Size() usable images,
// read afresh for each batch so that a size cut after an out-of-memory holds at once.
func formBatches(ctx context.Context, t ShardTask, ordered <-chan *item, batches chan<- *modelBatch, buffers pixelBuffers) error {
	defer close(batches)
	size := t.Labeler.ImageSize()
	cur := &modelBatch{}
	usable := 0
	send := func() error {
		if len(cur.items) == 0 {
			return nil
		}
		cur.input.Pixels = buffers.get(usable * 3 * size * size)
		for _, it := range cur.items {
			if it.usable() {
				cur.input.Pixels = append(cur.input.Pixels, it.pixels...)
				cur.input.Keys = append(cur.input.Keys, it.s.Key)
				cur.input.Captions = append(cur.input.Captions, inputCaptions(it.s))
				cur.input.Sources = append(cur.input.Sources, it.s.CaptionSource)
				it.pixels = nil
			}
		}
		cur.input.Size = size
		select {
		case batches <- cur:
		case <-ctx.Done():
			return ctx.Err()
		}
		cur = &modelBatch{}
		usable = 0
		return nil
	}
	for it := range ordered {
		select {
		case <-it.ready:
		case <-ctx.Done():
			return ctx.Err()
		}
		cur.items = append(cur.items, it)
		if it.usable() {
			usable++
		}
		if usable >= t.Sizer.Size() {
			if err := send(); err != nil {
				return err
			}
		}
	}
	if ctx.Err() != nil {
		return ctx.Err() // the reader stopped early; it reports why
	}
	return send()
}

func labelBatches(ctx context.Context, t ShardTask, batches <-chan *modelBatch, labeled chan<- *modelBatch, buffers pixelBuffers, times *stageTimes) error {
	defer close(labeled)
	for b := range batches {
		if b.input.Len() > 0 {
			began := time.Now()
			splits := t.Sizer.Splits()
			labels, err := LabelSplitting(ctx, t.Labeler, b.input, t.Sizer)
			if err != nil {
				return fmt.Errorf("shard %s: model stage: %w", t.Job.Shard.URL, err)
			}
			times.add(&times.model, began)
			t.Metrics.observeBatch(t.WorkerID, time.Since(began), t.Sizer.Size())
			t.Metrics.countSplits(t.WorkerID, t.Sizer.Splits()-splits)
			t.Metrics.observeMemory(t.WorkerID, t.Labeler)
			b.labels = labels
			buffers.put(b.input.Pixels)
			b.input = Batch{}
		}
		select {
		case labeled <- b:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// writeRows accounts for every item in order and writes the images that keep a caption.
func writeRows(ctx context.Context, t ShardTask, labeled <-chan *modelBatch, cw shardWriter, stats *shards.ShardStats, scores *scoreLog, times *stageTimes) error {
	var read int64
	for b := range labeled {
		began := time.Now()
		next := 0
		counts := map[string]int{}
		for _, it := range b.items {
			read++
			stats.CountSample(it.s)
			switch {
			case it.s.SkipReason != "":
				counts["skipped"]++
				t.Metrics.countError(t.WorkerID, it.s.SkipReason)
				continue
			case it.skip != "":
				stats.Skip(it.skip)
				counts["skipped"]++
				t.Metrics.countError(t.WorkerID, it.skip)
				continue
			}
			stats.ImagesDecoded++
			if next >= len(b.labels) {
				return fmt.Errorf("shard %s: model stage labelled %d images of a batch with more", t.Job.Shard.URL, len(b.labels))
			}
			lab := b.labels[next]
			next++
			row, err := judge(t, it, lab, stats, scores)
			if err != nil {
				return err
			}
			stats.CountImage(row != nil)
			if row == nil {
				counts["rejected"]++
				continue
			}
			counts["accepted"]++
			if err := cw.Write(*row); err != nil {
				return fmt.Errorf("shard %s: %w", t.Job.Shard.URL, err)
			}
		}
		for outcome, n := range counts {
			t.Metrics.countImages(t.WorkerID, outcome, n)
		}
		times.add(&times.write, began)
		if t.Progress != nil {
			t.Progress(read)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// judge applies the accept rule to an image's captions; the row is nil when none is kept.
func judge(t ShardTask, it *item, lab Labels, stats *shards.ShardStats, scores *scoreLog) (*shards.CleanedRow, error) {
	row := &shards.CleanedRow{Key: it.s.Key, SourceShard: t.Job.Shard.URL.String(), URL: it.s.URL, Width: it.width, Height: it.height,
		Captioner: t.Settings.Captioner.Path, Filter: t.Settings.Filter.Path, Meta: it.s.MetaJSON, Kept: it.s.Kept}
	if !t.Settings.OmitImages {
		row.Image = it.s.Image
	}
	for _, c := range lab.Captions {
		if c.Source == shards.SourceSynthetic {
			stats.CaptionsGenerated++
		}
		keep, err := t.Settings.Rule.Keep(spec.Source(c.Source), float64(c.ITM), float64(c.ITC))
		if err != nil {
			return nil, fmt.Errorf("shard %s: image %q: caption %q: %w", t.Job.Shard.URL, it.s.Key, c.Text, err)
		}
		if err := stats.CountCaption(c, keep); err != nil {
			return nil, err
		}
		scores.add(c)
		if keep {
			row.Captions = append(row.Captions, c)
		} else if t.Settings.WithRejected {
			row.Rejected = append(row.Rejected, c)
		}
	}
	if len(row.Captions) == 0 {
		return nil, nil
	}
	return row, nil
}

func cleanedMeta(t ShardTask) shards.CleanedMeta {
	rule := t.Settings.Rule
	th := map[string]float64{}
	for name, v := range map[string]float64{"web_itm": rule.Web.MinITM, "synthetic_itm": rule.Synthetic.MinITM,
		"web_itc": rule.Web.MinITC, "synthetic_itc": rule.Synthetic.MinITC} {
		if !math.IsNaN(v) { // NaN: no bar on that score
			th[name] = v
		}
	}
	gen, _ := json.Marshal(t.Settings.Generation)
	return shards.CleanedMeta{Version: t.Version, Build: t.Build, RunID: t.Job.Run, Captioner: t.Settings.Captioner.Path,
		Filter: t.Settings.Filter.Path, Thresholds: th,
		Extra: map[string]string{"rule": rule.String(), "generation": string(gen),
			"seed": fmt.Sprint(t.Settings.Generation.Seed), "shard": t.Job.Shard.URL.String(),
			"itm_first_token": string(t.Settings.ITMFirstToken.OrDefault()), "human_captions": fmt.Sprint(t.Settings.HumanCaptions)}}
}

// QueueDepth is how many samples wait between the reader and the batcher: two batches
// and one per decoder, so the next batch is decoded while the model runs on this one.
func QueueDepth(batch, decoders int) int { return 2*batch + decoders }

// ReadAndPrepare reads a shard and prepares its images the way a worker does, with
// decoders images at once and depth samples in flight, and does nothing else. It returns
// how many samples were read: the baseline `capfilt bench pipeline` measures the rest of
// the pipeline against.
func ReadAndPrepare(ctx context.Context, store shards.Store, in shards.URL, prep Preparer, decoders, depth int) (int64, error) {
	decoders = max(decoders, 1)
	ordered := make(chan *item, depth)
	toDecode := make(chan *item, depth)
	var times stageTimes
	var n int64
	g, gctx := errgroup.WithContext(ctx)
	var damage *shards.DamageError
	g.Go(func() error {
		return readShard(gctx, store, in, shards.ShardOptions{}, ordered, toDecode, &times, &damage)
	})
	for range decoders {
		g.Go(func() error { decodeImages(gctx, prep, 0, toDecode, &times); return nil })
	}
	g.Go(func() error {
		for it := range ordered {
			select {
			case <-it.ready:
			case <-gctx.Done():
				return gctx.Err()
			}
			it.pixels = nil // as the batcher does once it has copied them
			n++
		}
		return nil
	})
	err := g.Wait()
	return n, err
}
