package workers_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"github.com/capfilt/capfilt/coordinator"
	"github.com/capfilt/capfilt/pipeline/spec"
	"github.com/capfilt/capfilt/shards"
)

// captionRow is a row of a COCO-style Parquet input: no key column, a list of captions,
// and columns of its own (LAION's similarity, img2dataset's sha256).
type captionRow struct {
	image      []byte
	sentences  []string
	similarity float64
	sha256     string
}

func writeCaptionParquet(t *testing.T, path string, rows []captionRow) {
	t.Helper()
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "image", Type: arrow.BinaryTypes.Binary},
		{Name: "sentences", Type: arrow.ListOf(arrow.BinaryTypes.String)},
		{Name: "similarity", Type: arrow.PrimitiveTypes.Float64},
		{Name: "sha256", Type: arrow.BinaryTypes.String},
	}, nil)
	b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer b.Release()
	lb := b.Field(1).(*array.ListBuilder)
	for _, r := range rows {
		b.Field(0).(*array.BinaryBuilder).Append(r.image)
		lb.Append(true)
		for _, s := range r.sentences {
			lb.ValueBuilder().(*array.StringBuilder).Append(s)
		}
		b.Field(2).(*array.Float64Builder).Append(r.similarity)
		b.Field(3).(*array.StringBuilder).Append(r.sha256)
	}
	rec := b.NewRecordBatch()
	defer rec.Release()
	var buf bytes.Buffer
	w, err := pqarrow.NewFileWriter(schema, &buf, parquet.NewWriterProperties(), pqarrow.DefaultWriterProps())
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(rec); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// cocoInputs writes two keyless Parquet shards (train-00000, train-00001) whose rows
// hold 1 to 3 captions each; one entry is blank and is dropped. It returns the usable
// captions by the key each row should get, and the rows.
func cocoInputs(t *testing.T, dir string) (map[string][]string, map[string]captionRow) {
	t.Helper()
	want, rows := map[string][]string{}, map[string]captionRow{}
	for f, stem := range []string{"train-00000", "train-00001"} {
		var rs []captionRow
		for i := range 3 {
			r := captionRow{image: encodedScene(t, i%2 == 0, []string{"red", "green", "blue"}[i]),
				sentences:  []string{fmt.Sprintf("a %d shape", f*3+i), "a shape on grey", "two shapes"}[:1+i],
				similarity: 0.25 + float64(f*3+i)/100, sha256: fmt.Sprintf("%064x", f*3+i)}
			if i == 2 {
				r.sentences = append(r.sentences[:1], append([]string{"   "}, r.sentences[1:]...)...)
			}
			rs = append(rs, r)
			key := fmt.Sprintf("%s/%09d", stem, i)
			rows[key] = r
			for _, s := range r.sentences {
				if strings.TrimSpace(s) != "" {
					want[key] = append(want[key], s)
				}
			}
		}
		writeCaptionParquet(t, filepath.Join(dir, stem+".parquet"), rs)
	}
	return want, rows
}

// An img2dataset tar whose KEY.json members are written unlike Go would re-encode them
// (spacing, key order, escapes), so only a byte-for-byte copy keeps them.
func metaTar(t *testing.T, path string) map[string][]byte {
	t.Helper()
	metas := map[string][]byte{}
	var ms []member
	for i, colour := range []string{"red", "green", "blue"} {
		key := fmt.Sprintf("%09d", i)
		js := []byte(fmt.Sprintf(`{ "url":"https://example.com/%d.jpg" ,"status" : "success", "exif": "{\"Image Make\": \"Canon\"}",`+
			` "sha256": "%064x", "original_width": 4%d0, "caption": "caf\u00e9 n\u00ba%d",  "error_message": null }`, i, i, i, i))
		metas[key] = js
		ms = append(ms, member{key + ".jpg", encodedScene(t, false, colour)}, member{key + ".txt", []byte("a " + colour + " circle")},
			member{key + ".json", js})
	}
	writeTar(t, path, ms)
	return metas
}

// One run over an img2dataset tar and two keyless COCO-style Parquet files: the meta
// column holds each KEY.json byte for byte, keyless rows get keys from their file's
// stem, every entry of a caption list is scored on its own as a web caption, and the
// kept input columns come through with their types.
func TestRunCarriesSourceMetadataKeysKeptColumnsAndEveryCaption(t *testing.T) {
	w := newWorld(t)
	metas := metaTar(t, filepath.Join(w.in, "laion.tar"))
	want, rows := cocoInputs(t, w.in)
	rs := w.settings(t, "carry", filepath.Join(w.in, "*.tar"), filepath.Join(w.in, "*.parquet"))
	rs.Rule.Web, rs.Rule.Synthetic = spec.ITMOnly(0), spec.ITMOnly(0) // keep every caption: all are in the output
	rs.Columns = shards.ParquetColumns{Caption: "sentences", Keep: []string{"similarity", "sha256"}}
	w.submit(t, rs)
	w.startWorkers(t, 1, w.src)
	if st := w.waitComplete(t, "carry", 60*time.Second); len(st.Problems) != 0 {
		t.Fatalf("problems: %+v", st.Problems)
	}
	w.checkOutputs(t, "carry", rs.Output, 3)

	tarRows := readRows(t, w.store, rs.Output.Join("laion.parquet"))
	if len(tarRows) != len(metas) {
		t.Fatalf("%d rows of the tar, want %d", len(tarRows), len(metas))
	}
	for _, r := range tarRows {
		if !bytes.Equal(r.Meta, metas[r.Key]) {
			t.Errorf("row %s: meta %q, want KEY.json byte for byte %q", r.Key, r.Meta, metas[r.Key])
		}
		if !strings.Contains(string(metas[r.Key]), `"url":"`+r.URL+`"`) {
			t.Errorf("row %s: url %q is not its KEY.json's", r.Key, r.URL)
		}
	}

	seen := map[string]string{}
	for _, stem := range []string{"train-00000", "train-00001"} {
		out := readRows(t, w.store, rs.Output.Join(stem+".parquet"))
		if len(out) != 3 {
			t.Fatalf("%s: %d rows, want 3", stem, len(out))
		}
		for _, r := range out {
			if prev, dup := seen[r.Key]; dup {
				t.Fatalf("key %s in %s and %s", r.Key, prev, stem)
			}
			seen[r.Key] = stem
			in, ok := want[r.Key]
			if !ok {
				t.Fatalf("%s: row key %q is not <stem>/<row>", stem, r.Key)
			}
			var web []string
			synthetic := 0
			for _, c := range r.Captions {
				switch c.Source {
				case shards.SourceWeb:
					web = append(web, c.Text)
				case shards.SourceSynthetic:
					synthetic++
				default:
					t.Fatalf("row %s: caption %+v", r.Key, c)
				}
			}
			if !slices.Equal(web, in) || synthetic != 1 || r.Meta != nil {
				t.Fatalf("row %s: web captions %q (want one per usable entry, %q), %d synthetic, meta %q", r.Key, web, in, synthetic, r.Meta)
			}
			vals := r.Kept.Values()
			if !slices.Equal(r.Kept.Names(), []string{"similarity", "sha256"}) || vals["similarity"] != rows[r.Key].similarity ||
				vals["sha256"] != rows[r.Key].sha256 {
				t.Fatalf("row %s: kept %v %v, want the input's similarity %v and sha256", r.Key, r.Kept.Names(), vals, rows[r.Key].similarity)
			}
		}
		st, err := shards.ReadStats(context.Background(), w.store, rs.Output.Join(stem+".stats.json"))
		if err != nil {
			t.Fatal(err)
		}
		if st.CaptionsDropped[shards.SkipEmptyCaption] != 1 || st.Captions[shards.SourceWeb].Accepted != 6 {
			t.Fatalf("%s stats: dropped %v, web captions %+v; want the blank entry dropped and 6 scored", stem,
				st.CaptionsDropped, st.Captions[shards.SourceWeb])
		}
	}
}

// With --human the input captions are annotators': the filter scores them, and they are
// kept whatever the scores (the paper's rule), while synthetic ones face the bar.
func TestHumanCaptionsAreKeptUnfilteredUnlessFilterHuman(t *testing.T) {
	w := newWorld(t)
	want, _ := cocoInputs(t, w.in)
	rs := w.settings(t, "human", filepath.Join(w.in, "*.parquet"))
	rs.Rule.Web, rs.Rule.Synthetic = spec.ITMOnly(0.99), spec.ITMOnly(0.99) // the random model never reaches it
	rs.Columns.Caption = "sentences"
	rs.HumanCaptions = true
	w.submit(t, rs)
	w.startWorkers(t, 1, w.src)
	w.waitComplete(t, "human", 60*time.Second)
	w.checkOutputs(t, "human", rs.Output, 2)
	n := 0
	for _, stem := range []string{"train-00000", "train-00001"} {
		for _, r := range readRows(t, w.store, rs.Output.Join(stem+".parquet")) {
			var texts []string
			for _, c := range r.Captions {
				if c.Source != shards.SourceHuman || c.ITM >= 0.99 {
					t.Fatalf("row %s keeps %+v: only human captions pass the 0.99 bar", r.Key, c)
				}
				texts = append(texts, c.Text)
			}
			if !slices.Equal(texts, want[r.Key]) || len(r.Rejected) != 1 || r.Rejected[0].Source != shards.SourceSynthetic {
				t.Fatalf("row %s: kept %q (want %q), rejected %+v", r.Key, texts, want[r.Key], r.Rejected)
			}
			n++
		}
	}
	if n != len(want) {
		t.Fatalf("%d rows, want %d: every image has human captions", n, len(want))
	}
}

// The same shard written as WebDataset and as Parquet: the tar reads back with the
// project's own WebDataset reader, member by member as the Parquet's rows.
func TestWebDatasetOutputReadsBackLikeTheParquet(t *testing.T) {
	w := newWorld(t)
	w.shards(t, 1, 12)
	pq := w.settings(t, "as-parquet")
	w.submit(t, pq)
	wds := w.settings(t, "as-wds")
	wds.Output = mustURL(t, t.TempDir())
	wds.OutputFormat = shards.OutputWDS
	w.submit(t, wds)
	w.startWorkers(t, 1, w.src)
	w.waitComplete(t, "as-parquet", 60*time.Second)
	st := w.waitComplete(t, "as-wds", 60*time.Second)
	if len(st.Problems) != 0 {
		t.Fatalf("problems: %+v", st.Problems)
	}
	rows := readRows(t, w.store, pq.Output.Join("00000.parquet"))
	if len(rows) == 0 {
		t.Fatal("the Parquet run kept no image")
	}
	if _, err := os.Stat(filepath.Join(wds.Output.String(), "00000.parquet")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a wds run wrote Parquet: %v", err)
	}
	f, err := os.Open(filepath.Join(wds.Output.String(), "00000.tar"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := shards.OpenTar(f, f.Name(), shards.Limits{})
	var got []shards.Sample
	for {
		s, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, s)
	}
	if len(got) != len(rows) {
		t.Fatalf("%d samples in the tar, %d rows in the Parquet", len(got), len(rows))
	}
	for i, s := range got {
		row := rows[i]
		var lines []string
		for _, c := range row.Captions {
			lines = append(lines, c.Text)
		}
		if s.SkipReason != "" || s.Key != row.Key || s.Caption != strings.Join(lines, "\n") || s.Meta["key"] != row.Key ||
			len(s.Image) == 0 {
			t.Fatalf("sample %d: key %q caption %q skip %q meta key %v; Parquet row %q %q", i, s.Key, s.Caption, s.SkipReason,
				s.Meta["key"], row.Key, lines)
		}
	}
	var m *coordinator.Manifest
	waitFor(t, 10*time.Second, "the wds run's manifest", func() bool {
		m, err = coordinator.ReadManifest(context.Background(), w.store, wds.Output)
		return err == nil && m.Complete
	})
	if len(m.Shards) != 1 || !strings.HasSuffix(m.Shards[0].Output, "00000.tar") {
		t.Fatalf("manifest shards %+v, want the .tar as output", m.Shards)
	}
}
