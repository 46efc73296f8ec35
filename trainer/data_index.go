package trainer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"path"
	"path/filepath"
	"slices"

	"golang.org/x/sync/errgroup"

	"github.com/capfilt/capfilt/shards"
)

// DatasetOptions are the settings that decide which samples a Dataset holds.
type DatasetOptions struct {
	Captions CaptionSelector     // cleaned sources: which accepted captions may be drawn (default all)
	MaxWords int                 // pre_caption's max_words (default 30, BLIP's for pretraining and COCO)
	Shard    shards.ShardOptions // web sources: Parquet columns and member limits
	// Parallelism is how many files are indexed at once (default 4).
	Parallelism int
}

// DefaultMaxWords is BLIP's max_words for pretraining and finetuning captions.
const DefaultMaxWords = 30

func (o DatasetOptions) withDefaults() DatasetOptions {
	if o.Captions == "" {
		o.Captions = CaptionsAll
	}
	if o.MaxWords <= 0 {
		o.MaxWords = DefaultMaxWords
	}
	if o.Parallelism <= 0 {
		o.Parallelism = 4
	}
	return o
}

// Dataset is the indexed union of the --data sources: every file, in a fixed order,
// with the number of samples it gives. Opening it counts the samples of each file
// without decoding an image: a cleaned Parquet from its footer (or, with a caption
// selector, from its caption column), a COCO JSON from its entries, and a web shard by
// reading it through once, since a tar has no index. The counts fix the epoch length
// before training starts, which schedules and data-parallel ranks need.
type Dataset struct {
	store   shards.Store
	sources []DataSource
	opts    DatasetOptions
	units   []unit
	total   int64
	skipped map[string]int64
	damaged []string
	finger  string
}

// Index-time skip reason for a cleaned row without a caption of the selected source.
const SkipNoSelectedCaption = "no_selected_caption"

// OpenDataset expands and indexes the sources.
func OpenDataset(ctx context.Context, store shards.Store, sources []DataSource, opts DatasetOptions) (*Dataset, error) {
	opts = opts.withDefaults()
	if len(sources) == 0 {
		return nil, errors.New("dataset: no data sources")
	}
	if _, err := ParseCaptionSelector(string(opts.Captions)); err != nil {
		return nil, fmt.Errorf("dataset: %w", err)
	}
	d := &Dataset{store: store, sources: sources, opts: opts, skipped: map[string]int64{}}
	for i, s := range sources {
		switch s.Kind {
		case SourceCleaned, SourceWeb:
			urls, err := shards.Expand(ctx, store, s.Location)
			if err != nil {
				return nil, fmt.Errorf("data source %s: %w", s, err)
			}
			for _, u := range urls {
				d.units = append(d.units, unit{source: i, kind: s.Kind, url: u})
			}
		case SourceCOCO:
			u, err := shards.ParseURL(s.Location)
			if err != nil {
				return nil, fmt.Errorf("data source %s: %w", s, err)
			}
			d.units = append(d.units, unit{source: i, kind: s.Kind, url: u})
		default:
			return nil, fmt.Errorf("data source %s: unknown kind %q", s, s.Kind)
		}
	}
	skips := make([]map[string]int64, len(d.units))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(opts.Parallelism)
	for i := range d.units {
		g.Go(func() error {
			var err error
			skips[i], err = d.index(gctx, &d.units[i])
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	h := sha256.New()
	fmt.Fprintf(h, "captions=%s max_words=%d\n", opts.Captions, opts.MaxWords)
	for i := range d.units {
		u := &d.units[i]
		u.base = d.total
		d.total += u.count
		for k, v := range skips[i] {
			d.skipped[k] += v
		}
		if u.damaged != "" {
			d.damaged = append(d.damaged, u.damaged)
		}
		fmt.Fprintf(h, "%s %s %d\n", u.kind, u.url, u.count)
	}
	if d.total == 0 {
		return nil, fmt.Errorf("dataset: the sources hold no usable sample (skipped while indexing: %v)", d.skipped)
	}
	d.finger = hex.EncodeToString(h.Sum(nil))[:16]
	return d, nil
}

// index counts u's candidates and the samples it cannot use, by reason.
func (d *Dataset) index(ctx context.Context, u *unit) (map[string]int64, error) {
	skipped := map[string]int64{}
	switch u.kind {
	case SourceCleaned:
		r, obj, err := d.openCleaned(ctx, u.url, false) // refuses a file without images
		if err != nil {
			return nil, err
		}
		u.count = r.NumRows()
		if err := errors.Join(r.Close(), obj.Close()); err != nil || d.opts.Captions == CaptionsAll {
			// Every cleaned row keeps at least one caption: the footer's row count is it.
			return skipped, err
		}
		// A selector needs the caption column: read it alone.
		if r, obj, err = d.openCleaned(ctx, u.url, true); err != nil {
			return nil, err
		}
		defer obj.Close()
		defer r.Close()
		u.count = 0
		for {
			row, err := r.Next()
			if errors.Is(err, io.EOF) {
				return skipped, nil
			}
			if err != nil {
				return nil, err
			}
			if len(selectCaptions(row.Captions, d.opts.Captions)) > 0 {
				u.count++
			} else {
				skipped[SkipNoSelectedCaption]++
			}
		}
	case SourceWeb:
		r, err := shards.OpenShard(ctx, d.store, u.url, d.opts.Shard)
		if err != nil {
			return nil, err
		}
		defer r.Close()
		for {
			s, err := r.Next()
			if errors.Is(err, io.EOF) {
				return skipped, nil
			}
			if err != nil {
				// Damaged part-way: the samples before the damage are kept, as the
				// pipeline keeps them.
				u.damaged = err.Error()
				return skipped, nil
			}
			if s.SkipReason != "" {
				skipped[s.SkipReason]++
				continue
			}
			u.count++
		}
	case SourceCOCO:
		rc, err := d.store.Open(ctx, u.url)
		if err != nil {
			return nil, err
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("coco source %s: %w", u.url, err)
		}
		root, err := d.imageRoot(d.sources[u.source], u.url)
		if err != nil {
			return nil, err
		}
		if u.coco, err = readCOCO(data, u.url.String(), root); err != nil {
			return nil, err
		}
		u.count = int64(len(u.coco))
		return skipped, nil
	}
	return nil, fmt.Errorf("unit %s: unknown kind %q", u.url, u.kind)
}

func (d *Dataset) imageRoot(s DataSource, file shards.URL) (shards.URL, error) {
	if s.ImageRoot != "" {
		u, err := shards.ParseURL(s.ImageRoot)
		if err != nil {
			return u, fmt.Errorf("data source %s: image root: %w", s, err)
		}
		return u, nil
	}
	dir := file
	if file.Scheme == shards.SchemeS3 {
		dir.Path = path.Dir(file.Path)
		if dir.Path == "." {
			dir.Path = ""
		}
		return dir, nil
	}
	return shards.ParseURL(filepath.Dir(file.Path))
}

// Len is the number of samples of one epoch over every rank.
func (d *Dataset) Len() int64 { return d.total }

// Files is the number of files indexed.
func (d *Dataset) Files() int { return len(d.units) }

// Skipped counts, by reason, the samples indexing found unusable (reader skips such as
// missing captions, cleaned rows without a selected caption); they are never part of
// an epoch.
func (d *Dataset) Skipped() map[string]int64 { return maps.Clone(d.skipped) }

// Damaged lists the web shards that end in damage, with the error; their samples
// before it are used.
func (d *Dataset) Damaged() []string { return slices.Clone(d.damaged) }

// Fingerprint identifies the indexed data (files, counts, caption settings); a
// DataPosition from other data is refused.
func (d *Dataset) Fingerprint() string { return d.finger }

// StepsPerEpoch is the number of batches of batchSize each of world ranks gets per
// epoch: the smallest rank's share (every source split into world blocks) divided by
// the batch size, the remainder dropped, as BLIP's loaders drop the last batch. Every
// rank runs this many steps, so data-parallel ranks stay in step.
func (d *Dataset) StepsPerEpoch(world, batchSize int) int {
	if world <= 0 || batchSize <= 0 {
		return 0
	}
	least := d.total
	for r := range world {
		least = min(least, d.rankShare(r, world))
	}
	return int(least / int64(batchSize))
}
