package shards

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"time"
)

// ShardStats accounts for every sample of one shard; it is written beside the cleaned
// Parquet as <stem>.stats.json. Images obey
//
//	SamplesRead = ImagesKept + ImagesRejected + SamplesSkipped
//
// (Check verifies it): a sample is skipped (by the reader or the decoder, with a reason),
// or its image is scored and then kept (at least one caption accepted: a row of the
// output) or rejected (every caption rejected). Captions are counted by source.
type ShardStats struct {
	Shard string `json:"shard"`
	RunID string `json:"run_id,omitempty"`

	SamplesRead       int64            `json:"samples_read"`
	SamplesSkipped    int64            `json:"samples_skipped"`
	Skipped           map[string]int64 `json:"skipped_by_reason"`
	ImagesDecoded     int64            `json:"images_decoded"`
	ImagesKept        int64            `json:"images_kept"`
	ImagesRejected    int64            `json:"images_rejected"`
	CaptionsTruncated int64            `json:"captions_truncated"`
	CaptionsGenerated int64            `json:"captions_generated"`
	// CaptionsDropped counts, by reason, the entries of caption lists that were not
	// usable in samples that had other usable ones (Sample.DroppedCaptions).
	CaptionsDropped map[string]int64 `json:"captions_dropped_by_reason"`

	// Damage is set when the shard broke part-way (a *DamageError ended it): the counts
	// are those of the samples read before. In run totals (Merge), ShardsDamaged counts
	// the damaged shards instead.
	Damage        *ShardDamage `json:"damage,omitempty"`
	ShardsDamaged int64        `json:"shards_damaged,omitempty"`

	// Captions, ITM and ITC are keyed by caption source (SourceWeb, SourceHuman,
	// SourceSynthetic).
	Captions map[string]*CaptionCounts `json:"captions"`
	ITM      map[string]*Histogram     `json:"itm_histogram"`
	ITC      map[string]*Histogram     `json:"itc_histogram"`

	// Timings are wall seconds spent per stage ("read", "decode", "caption", ...).
	Timings map[string]float64 `json:"timings_seconds"`
}

// CaptionCounts counts the filter's decisions on the captions of one source.
type CaptionCounts struct {
	Accepted int64 `json:"accepted"`
	Rejected int64 `json:"rejected"`
}

// HistogramBins is the number of equal bins of score histograms.
const HistogramBins = 20

// NewShardStats starts the stats of one shard, with empty histograms for every source:
// ITM probabilities over [0,1], ITC cosine similarities over [-1,1].
func NewShardStats(shard, runID string) *ShardStats {
	st := &ShardStats{
		Shard: shard, RunID: runID,
		Skipped:         map[string]int64{},
		CaptionsDropped: map[string]int64{},
		Captions:        map[string]*CaptionCounts{},
		ITM:             map[string]*Histogram{},
		ITC:             map[string]*Histogram{},
		Timings:         map[string]float64{},
	}
	for _, src := range CaptionSources {
		st.Captions[src] = &CaptionCounts{}
		st.ITM[src] = NewHistogram(0, 1, HistogramBins)
		st.ITC[src] = NewHistogram(-1, 1, HistogramBins)
	}
	return st
}

// CountSample records a sample as read, and as skipped when the reader skipped it.
func (st *ShardStats) CountSample(s Sample) {
	st.SamplesRead++
	if s.CaptionTruncated {
		st.CaptionsTruncated++
	}
	if s.SkipReason != "" {
		st.Skip(s.SkipReason)
		return
	}
	for _, reason := range s.DroppedCaptions {
		st.CaptionsDropped[reason]++
	}
}

// RecordDamage records where and why the shard broke part-way.
func (st *ShardStats) RecordDamage(d *DamageError) { st.Damage = d.Damage() }

// Skip records a sample, already counted as read, as skipped for reason.
func (st *ShardStats) Skip(reason string) {
	st.SamplesSkipped++
	st.Skipped[reason]++
}

// CountImage records the filter's verdict on a scored image: kept when at least one of
// its captions was accepted.
func (st *ShardStats) CountImage(kept bool) {
	if kept {
		st.ImagesKept++
	} else {
		st.ImagesRejected++
	}
}

// CountCaption records one scored caption.
func (st *ShardStats) CountCaption(c Caption, accepted bool) error {
	counts, ok := st.Captions[c.Source]
	if !ok {
		return fmt.Errorf("stats of %s: caption source %q, want one of %v", st.Shard, c.Source, CaptionSources)
	}
	if accepted {
		counts.Accepted++
	} else {
		counts.Rejected++
	}
	st.ITM[c.Source].Add(float64(c.ITM))
	st.ITC[c.Source].Add(float64(c.ITC))
	return nil
}

// AddTiming adds d to the time spent in stage.
func (st *ShardStats) AddTiming(stage string, d time.Duration) {
	st.Timings[stage] += d.Seconds()
}

// Check verifies that every sample is accounted for.
func (st *ShardStats) Check() error {
	if got := st.ImagesKept + st.ImagesRejected + st.SamplesSkipped; got != st.SamplesRead {
		return fmt.Errorf("stats of %s: %d samples read but %d kept + %d rejected + %d skipped = %d",
			st.Shard, st.SamplesRead, st.ImagesKept, st.ImagesRejected, st.SamplesSkipped, got)
	}
	var byReason int64
	for _, n := range st.Skipped {
		byReason += n
	}
	if byReason != st.SamplesSkipped {
		return fmt.Errorf("stats of %s: %d samples skipped but the reasons add up to %d", st.Shard, st.SamplesSkipped, byReason)
	}
	for src, c := range st.Captions {
		if h := st.ITM[src]; h == nil || h.Total() != c.Accepted+c.Rejected {
			return fmt.Errorf("stats of %s: %s captions scored %d times but the ITM histogram holds %d", st.Shard, src, c.Accepted+c.Rejected, h.Total())
		}
	}
	return nil
}

// Merge adds the counts of o, for run totals.
func (st *ShardStats) Merge(o *ShardStats) error {
	st.SamplesRead += o.SamplesRead
	st.SamplesSkipped += o.SamplesSkipped
	st.ImagesDecoded += o.ImagesDecoded
	st.ImagesKept += o.ImagesKept
	st.ImagesRejected += o.ImagesRejected
	st.CaptionsTruncated += o.CaptionsTruncated
	st.CaptionsGenerated += o.CaptionsGenerated
	for k, v := range o.Skipped {
		st.Skipped[k] += v
	}
	for k, v := range o.CaptionsDropped {
		st.CaptionsDropped[k] += v
	}
	st.ShardsDamaged += o.ShardsDamaged
	if o.Damage != nil {
		st.ShardsDamaged++
	}
	for k, v := range o.Timings {
		st.Timings[k] += v
	}
	for src, c := range o.Captions {
		if st.Captions[src] == nil {
			st.Captions[src] = &CaptionCounts{}
		}
		st.Captions[src].Accepted += c.Accepted
		st.Captions[src].Rejected += c.Rejected
	}
	for _, pair := range []struct{ dst, src map[string]*Histogram }{{st.ITM, o.ITM}, {st.ITC, o.ITC}} {
		for src, h := range pair.src {
			if pair.dst[src] == nil {
				pair.dst[src] = NewHistogram(h.Lo, h.Hi, len(h.Counts))
			}
			if err := pair.dst[src].Merge(h); err != nil {
				return fmt.Errorf("merge stats of %s: %w", o.Shard, err)
			}
		}
	}
	return nil
}

// Histogram counts values in equal bins over [Lo, Hi]. Values outside the range land in
// the edge bins (a score of exactly 1.0 belongs to the top bin); NaNs are counted apart.
type Histogram struct {
	Lo     float64 `json:"lo"`
	Hi     float64 `json:"hi"`
	Counts []int64 `json:"counts"`
	NaN    int64   `json:"nan,omitempty"`
}

// NewHistogram makes an empty histogram of bins bins over [lo, hi].
func NewHistogram(lo, hi float64, bins int) *Histogram {
	return &Histogram{Lo: lo, Hi: hi, Counts: make([]int64, bins)}
}

// Add counts one value.
func (h *Histogram) Add(v float64) {
	if math.IsNaN(v) {
		h.NaN++
		return
	}
	n := len(h.Counts)
	i := int(math.Floor((v - h.Lo) / (h.Hi - h.Lo) * float64(n)))
	h.Counts[min(max(i, 0), n-1)]++
}

// Total is the number of values counted, NaNs included.
func (h *Histogram) Total() int64 {
	t := h.NaN
	for _, c := range h.Counts {
		t += c
	}
	return t
}

// Merge adds the counts of o, which must have the same bins.
func (h *Histogram) Merge(o *Histogram) error {
	if h.Lo != o.Lo || h.Hi != o.Hi || len(h.Counts) != len(o.Counts) {
		return fmt.Errorf("histogram bins differ: %d over [%g,%g] vs %d over [%g,%g]", len(h.Counts), h.Lo, h.Hi, len(o.Counts), o.Lo, o.Hi)
	}
	for i, c := range o.Counts {
		h.Counts[i] += c
	}
	h.NaN += o.NaN
	return nil
}

// WriteStats publishes st as indented JSON at u, atomically.
func WriteStats(ctx context.Context, store Store, u URL, st *ShardStats) error {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode stats of %s: %w", st.Shard, err)
	}
	w, err := store.Create(ctx, u)
	if err != nil {
		return err
	}
	defer w.Abort()
	if _, err := w.Write(append(data, '\n')); err != nil {
		return err
	}
	return w.Close()
}

// maxStatsBytes bounds a stats file read back; real ones are a few KB.
const maxStatsBytes = 16 << 20

// ReadStats reads a stats.json written by WriteStats.
func ReadStats(ctx context.Context, store Store, u URL) (*ShardStats, error) {
	r, err := store.Open(ctx, u)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	data, err := io.ReadAll(io.LimitReader(r, maxStatsBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", u, err)
	}
	if len(data) > maxStatsBytes {
		return nil, fmt.Errorf("read %s: over %d bytes, not a stats file", u, maxStatsBytes)
	}
	st := NewShardStats("", "")
	if err := json.Unmarshal(data, st); err != nil {
		return nil, fmt.Errorf("decode %s: %w", u, err)
	}
	if st.Shard == "" {
		return nil, fmt.Errorf("decode %s: %w", u, errors.New("no shard field; not a stats file"))
	}
	return st, nil
}
