package shards

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"strings"
	"testing"
)

// wdsRows are rows whose keys, images and captions exercise what a WebDataset shard must
// name carefully.
func wdsRows(t *testing.T) []CleanedRow {
	rows := testRows(t, 4, 10)
	rows[0].Image = testJPEG(t, 8, 6)
	rows[1].Image = testPNG(t, 4, 4)
	rows[1].Key = "folder/img.v2.final" // dots WebDataset would split at
	rows[2].Image = testJPEG(t, 3, 3)
	rows[2].Captions = []Caption{{Text: "a caption\nover two lines", Source: SourceWeb, ITM: float32(math.NaN()), ITC: 0.5}}
	rows[3].Image = []byte("RIFF\x00\x00\x00\x00WEBPVP8 ")
	rows[3].Key = "train-00001/000000003"
	return rows
}

func TestWDSOutputMatchesTheParquetFromTheSameRows(t *testing.T) {
	rows := wdsRows(t)
	var shard bytes.Buffer
	w, err := NewWDSWriter(&shard, testMeta, CleanedOptions{WithRejected: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if err := w.Write(r); err != nil {
			t.Fatalf("Write %s: %v", r.Key, err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	_, parquetRows := readCleaned(t, writeCleaned(t, rows, CleanedOptions{WithRejected: true}), CleanedReadOptions{})

	samples, err := readSamples(OpenTar(bytes.NewReader(shard.Bytes()), "out.tar", Limits{}))
	if err != nil {
		t.Fatal(err)
	}
	if len(samples) != len(parquetRows) {
		t.Fatalf("%d samples in the wds shard, %d rows in the Parquet", len(samples), len(parquetRows))
	}
	wantKeys := []string{"000000000", "folder/img_v2_final", "000000002", "train-00001/000000003"}
	wantExt := []string{"jpg", "png", "jpg", "webp"}
	for i, s := range samples {
		p := parquetRows[i]
		var rec struct {
			Key      string          `json:"key"`
			URL      *string         `json:"url"`
			Captions []wdsCaption    `json:"captions"`
			Rejected []wdsCaption    `json:"rejected"`
			Meta     json.RawMessage `json:"meta"`
			RunID    string          `json:"run_id"`
			Width    int             `json:"width"`
		}
		if err := json.Unmarshal(s.MetaJSON, &rec); err != nil {
			t.Fatalf("sample %s: KEY.json %q: %v", s.Key, s.MetaJSON, err)
		}
		if s.SkipReason != "" || s.Key != wantKeys[i] || rec.Key != p.Key || s.ImageExt != wantExt[i] || !bytes.Equal(s.Image, p.Image) {
			t.Errorf("sample %d: member key %q (json key %q) ext %q skip %q; Parquet key %q, want member key %q ext %q",
				i, s.Key, rec.Key, s.ImageExt, s.SkipReason, p.Key, wantKeys[i], wantExt[i])
		}
		var lines []string
		for _, c := range p.Captions {
			lines = append(lines, strings.ReplaceAll(c.Text, "\n", " "))
		}
		if s.Caption != strings.Join(lines, "\n") {
			t.Errorf("sample %d: KEY.txt %q, want the accepted captions one per line %q", i, s.Caption, lines)
		}
		if len(rec.Captions) != len(p.Captions) || rec.Captions[0].Text != p.Captions[0].Text || rec.Captions[0].Source != p.Captions[0].Source ||
			len(rec.Rejected) != len(p.Rejected) || rec.RunID != "run-42" || rec.Width != p.Width {
			t.Errorf("sample %d: json %+v, Parquet row %+v", i, rec, p)
		}
		if (p.Meta == nil) != (string(rec.Meta) == "null") || (p.Meta != nil && !jsonEqual(t, rec.Meta, p.Meta)) {
			t.Errorf("sample %d: json meta %s, Parquet meta %s", i, rec.Meta, p.Meta)
		}
		if (p.URL == "") != (rec.URL == nil) {
			t.Errorf("sample %d: json url %v, Parquet url %q", i, rec.URL, p.URL)
		}
	}
	if !strings.Contains(string(samples[2].MetaJSON), `"itm":null`) {
		t.Errorf("a NaN score is not null in %s", samples[2].MetaJSON)
	}
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return bytes.Equal(xa, ya)
}

func TestWDSWriterRefusesWhatWouldBreakTheShard(t *testing.T) {
	rows := wdsRows(t)
	if _, err := NewWDSWriter(io.Discard, testMeta, CleanedOptions{OmitImages: true}); err == nil {
		t.Error("a wds writer without images")
	}
	w, _ := NewWDSWriter(io.Discard, testMeta, CleanedOptions{})
	if err := w.Write(rows[1]); err != nil {
		t.Fatal(err)
	}
	clash := rows[0]
	clash.Key = "folder/img_v2.final" // the same member names as "folder/img.v2.final"
	if err := w.Write(clash); err == nil || !strings.Contains(err.Error(), "folder/img.v2.final") {
		t.Errorf("two rows, one member name: %v", err)
	}
	odd := rows[0]
	odd.Image = []byte("not an image")
	if err := w.Write(odd); err == nil || !strings.Contains(err.Error(), "no format") {
		t.Errorf("unknown image bytes: %v", err)
	}
	noCap := rows[2]
	noCap.Captions = nil
	if err := w.Write(noCap); err == nil || !strings.Contains(err.Error(), "no accepted caption") {
		t.Errorf("no caption: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// The shard is published like the Parquet: through Store.Create, visible only on Close.
func TestWDSShardIsPublishedAtomically(t *testing.T) {
	ctx := context.Background()
	for _, st := range storesUnderTest(t) {
		t.Run(st.name, func(t *testing.T) {
			in := st.root.Join("in", "shard-00003.tar.gz")
			u := OutputURL(st.root.Join("out"), in, OutputWDS)
			if u.Base() != "shard-00003.tar" {
				t.Fatalf("output %s", u)
			}
			obj, err := st.store.Create(ctx, u)
			if err != nil {
				t.Fatal(err)
			}
			defer obj.Abort()
			w, _ := NewWDSWriter(obj, testMeta, CleanedOptions{})
			for _, r := range wdsRows(t) {
				if err := w.Write(r); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := st.store.Stat(ctx, u); !errors.Is(err, ErrNotFound) {
				t.Fatalf("visible before publishing: %v", err)
			}
			if err := obj.Close(); err != nil {
				t.Fatal(err)
			}
			r, err := OpenShard(ctx, st.store, u, ShardOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if got, err := readSamples(r); err != nil || len(got) != 4 {
				t.Fatalf("published shard: %d samples, %v", len(got), err)
			}
		})
	}
}

func TestParseOutputFormat(t *testing.T) {
	for in, want := range map[string]OutputFormat{"": OutputParquet, "parquet": OutputParquet, "WDS": OutputWDS} {
		if got, err := ParseOutputFormat(in); err != nil || got != want {
			t.Errorf("%q: %q, %v", in, got, err)
		}
	}
	if _, err := ParseOutputFormat("webdataset2"); err == nil || !strings.Contains(err.Error(), `"wds"`) {
		t.Errorf("bad format: %v", err)
	}
}
