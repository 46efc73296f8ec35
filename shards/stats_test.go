package shards

import (
	"context"
	"encoding/json"
	"io"
	"math"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestHistogramBinsScores(t *testing.T) {
	itm := NewHistogram(0, 1, 20)
	for _, v := range []float64{0, 0.049, 0.05, 0.5, 0.999, 1, 1.5, -0.2, math.NaN()} {
		itm.Add(v)
	}
	want := make([]int64, 20)
	want[0] = 3  // 0, 0.049 and -0.2 clamped
	want[1] = 1  // 0.05
	want[10] = 1 // 0.5
	want[19] = 3 // 0.999, 1 (the top edge is in the top bin) and 1.5 clamped
	if !reflect.DeepEqual(itm.Counts, want) || itm.NaN != 1 || itm.Total() != 9 {
		t.Fatalf("ITM histogram %v NaN %d, want %v NaN 1", itm.Counts, itm.NaN, want)
	}
	itc := NewHistogram(-1, 1, 20)
	itc.Add(-1)
	itc.Add(0)
	itc.Add(0.95)
	if itc.Counts[0] != 1 || itc.Counts[10] != 1 || itc.Counts[19] != 1 {
		t.Fatalf("ITC histogram %v", itc.Counts)
	}
	if err := itm.Merge(itc); err == nil {
		t.Fatal("merged histograms over different ranges")
	}
}

// simulateShard runs the accounting a worker does over a small shard.
func simulateShard(t *testing.T) *ShardStats {
	st := NewShardStats("s3://in/shard-00001.tar", "run-1")
	samples := []Sample{
		{Key: "0"}, {Key: "1", CaptionTruncated: true}, {Key: "2", SkipReason: SkipMissingCaption},
		{Key: "3"}, {Key: "4", SkipReason: SkipNonUTF8Caption},
	}
	for _, s := range samples {
		st.CountSample(s)
		if s.SkipReason != "" {
			continue
		}
		if s.Key == "3" { // the decoder finds it corrupt
			st.Skip(SkipCorruptImage)
			continue
		}
		st.ImagesDecoded++
		st.CaptionsGenerated++
		web := Caption{Source: SourceWeb, ITM: 0.2, ITC: -0.3}
		synth := Caption{Source: SourceSynthetic, ITM: 0.8, ITC: 0.4}
		keep := s.Key == "0"
		if err := st.CountCaption(web, false); err != nil {
			t.Fatal(err)
		}
		if err := st.CountCaption(synth, keep); err != nil {
			t.Fatal(err)
		}
		st.CountImage(keep)
	}
	st.AddTiming("read", 1500*time.Millisecond)
	st.AddTiming("read", 500*time.Millisecond)
	return st
}

func TestShardStatsAccountForEverySample(t *testing.T) {
	st := simulateShard(t)
	if err := st.Check(); err != nil {
		t.Fatal(err)
	}
	if st.SamplesRead != 5 || st.ImagesKept != 1 || st.ImagesRejected != 1 || st.SamplesSkipped != 3 ||
		st.CaptionsTruncated != 1 || st.Skipped[SkipCorruptImage] != 1 || st.Timings["read"] != 2 {
		t.Fatalf("stats %+v", st)
	}
	if c := st.Captions[SourceSynthetic]; c.Accepted != 1 || c.Rejected != 1 {
		t.Fatalf("synthetic captions %+v", c)
	}
	if err := st.CountCaption(Caption{Source: "alien"}, true); err == nil {
		t.Error("counted a caption of an unknown source")
	}

	lost := simulateShard(t)
	lost.SamplesRead++ // a sample read and never accounted for
	if err := lost.Check(); err == nil || !strings.Contains(err.Error(), "6 samples read") {
		t.Fatalf("Check missed a lost sample: %v", err)
	}
	unscored := simulateShard(t)
	unscored.Captions[SourceWeb].Accepted++
	if err := unscored.Check(); err == nil {
		t.Fatal("Check missed a caption counted without its score")
	}
}

func TestShardStatsMergeIntoRunTotals(t *testing.T) {
	total := NewShardStats("run", "run-1")
	for range 3 {
		if err := total.Merge(simulateShard(t)); err != nil {
			t.Fatal(err)
		}
	}
	if err := total.Check(); err != nil {
		t.Fatal(err)
	}
	if total.SamplesRead != 15 || total.Skipped[SkipMissingCaption] != 3 || total.ITM[SourceWeb].Total() != 6 || total.Timings["read"] != 6 {
		t.Fatalf("totals %+v", total)
	}
}

func TestStatsJSONRoundTripsThroughStores(t *testing.T) {
	ctx := context.Background()
	for _, st := range storesUnderTest(t) {
		t.Run(st.name, func(t *testing.T) {
			stats := simulateShard(t)
			u := StatsURL(st.root, mustURL(t, "s3://in/shard-00001.tar"))
			if err := WriteStats(ctx, st.store, u, stats); err != nil {
				t.Fatal(err)
			}
			raw := string(readAll(t, st.store, u))
			for _, field := range []string{`"samples_read": 5`, `"skipped_by_reason"`, `"itm_histogram"`, `"timings_seconds"`, `"non_utf8_caption": 1`} {
				if !strings.Contains(raw, field) {
					t.Errorf("stats.json lacks %s:\n%s", field, raw)
				}
			}
			back, err := ReadStats(ctx, st.store, u)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(back, stats) {
				t.Fatalf("read back\n %+v\nwrote\n %+v", back, stats)
			}
		})
	}
}

func TestDamageIsRecordedInStatsAndCountedInTotals(t *testing.T) {
	ctx := context.Background()
	store := OpenStore(StoreConfig{})
	st := NewShardStats("s.tar", "r")
	st.RecordDamage(&DamageError{Shard: "s.tar", Err: io.ErrUnexpectedEOF,
		ShardDamage: ShardDamage{TruncatedAt: 4096, Member: "3.jpg", After: "2.txt", Reason: DamageTruncated, Detail: "unexpected EOF"}})
	u := URL{Scheme: SchemeFile, Path: filepath.Join(t.TempDir(), "s.stats.json")}
	if err := WriteStats(ctx, store, u, st); err != nil {
		t.Fatal(err)
	}
	back, err := ReadStats(ctx, store, u)
	if err != nil {
		t.Fatal(err)
	}
	if back.Damage == nil || *back.Damage != *st.Damage {
		t.Fatalf("damage read back %+v, wrote %+v", back.Damage, st.Damage)
	}
	raw, _ := json.Marshal(st)
	if !strings.Contains(string(raw), `"damage":{"truncated_at":4096,"member":"3.jpg","after_member":"2.txt","reason":"truncated"`) {
		t.Errorf("stats.json %s", raw)
	}
	total := NewShardStats("run", "r")
	for _, s := range []*ShardStats{st, NewShardStats("whole.tar", "r"), back} {
		if err := total.Merge(s); err != nil {
			t.Fatal(err)
		}
	}
	if total.ShardsDamaged != 2 || total.Damage != nil {
		t.Errorf("totals: %d damaged shards, damage %+v", total.ShardsDamaged, total.Damage)
	}
	if whole, _ := json.Marshal(NewShardStats("whole.tar", "r")); strings.Contains(string(whole), "damage") {
		t.Errorf("a whole shard's stats mention damage: %s", whole)
	}
}
