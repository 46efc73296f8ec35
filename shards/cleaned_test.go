package shards

import (
	"bytes"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/parquet/file"
)

var testMeta = CleanedMeta{
	Version: "v0.1.0-test", Build: "abc123", RunID: "run-42", Captioner: "blip-cap-tiny", Filter: "blip-itm-tiny",
	Thresholds: map[string]float64{"itm": 0.5},
	Extra:      map[string]string{"seed": "7"},
}

func testRows(t testing.TB, n, imageBytes int) []CleanedRow {
	rows := make([]CleanedRow, n)
	for i := range rows {
		rows[i] = CleanedRow{
			Key:         fmt.Sprintf("%09d", i),
			SourceShard: "s3://in/shard-00001.tar",
			URL:         fmt.Sprintf("http://example.com/%d.jpg", i),
			Image:       randomBytes(imageBytes, uint64(i)),
			Width:       100 + i, Height: 50,
			Captions: []Caption{
				{Text: fmt.Sprintf("web caption %d", i), Source: SourceWeb, ITM: 0.9, ITC: 0.4},
				{Text: "a synthetic caption", Source: SourceSynthetic, ITM: 0.75, ITC: -0.125},
			},
			Rejected:  []Caption{{Text: "buy now!!", Source: SourceWeb, ITM: 0.01, ITC: -0.5}},
			Captioner: "blip-cap-tiny", Filter: "blip-itm-tiny",
			Meta: []byte(fmt.Sprintf(`{"status": "success",  "sha256":"%064d"}`, i)),
		}
	}
	if n > 1 {
		rows[1].URL = "" // stored as null
		rows[1].Rejected = nil
		rows[1].Meta = nil
		rows[1].Captions[0].Source = SourceHuman
	}
	return rows
}

func writeCleaned(t testing.TB, rows []CleanedRow, opts CleanedOptions) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewCleanedWriter(&buf, testMeta, opts)
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
	return buf.Bytes()
}

func readCleaned(t testing.TB, data []byte, opts CleanedReadOptions) (*CleanedReader, []CleanedRow) {
	t.Helper()
	r, err := OpenCleaned(bytes.NewReader(data), "out.parquet", opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	var rows []CleanedRow
	for {
		row, err := r.Next()
		if err == io.EOF {
			return r, rows
		}
		if err != nil {
			t.Fatal(err)
		}
		rows = append(rows, row)
	}
}

func TestCleanedParquetRoundTrips(t *testing.T) {
	cases := []struct {
		name string
		opts CleanedOptions
		read CleanedReadOptions
		want func(CleanedRow) CleanedRow
	}{
		{"default", CleanedOptions{}, CleanedReadOptions{}, func(r CleanedRow) CleanedRow { r.Rejected = nil; return r }},
		{"with rejected", CleanedOptions{WithRejected: true}, CleanedReadOptions{}, func(r CleanedRow) CleanedRow { return r }},
		{"images omitted", CleanedOptions{OmitImages: true}, CleanedReadOptions{}, func(r CleanedRow) CleanedRow { r.Image, r.Rejected = nil, nil; return r }},
		{"images skipped on read", CleanedOptions{}, CleanedReadOptions{SkipImages: true}, func(r CleanedRow) CleanedRow { r.Image, r.Rejected = nil, nil; return r }},
	}
	rows := testRows(t, 300, 2000)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, got := readCleaned(t, writeCleaned(t, rows, c.opts), c.read)
			if len(got) != len(rows) || r.NumRows() != int64(len(rows)) {
				t.Fatalf("read %d rows (NumRows %d), wrote %d", len(got), r.NumRows(), len(rows))
			}
			for i := range rows {
				if want := c.want(rows[i]); !reflect.DeepEqual(got[i], want) {
					t.Fatalf("row %d:\n got %+v\nwant %+v", i, summary(got[i]), summary(want))
				}
			}
			if !reflect.DeepEqual(r.Meta(), testMeta) {
				t.Errorf("Meta = %+v, want %+v", r.Meta(), testMeta)
			}
			if r.HasImages() == (c.opts.OmitImages || c.read.SkipImages) {
				t.Errorf("HasImages = %v", r.HasImages())
			}
		})
	}
}

func summary(r CleanedRow) CleanedRow {
	r.Image = []byte(fmt.Sprintf("<%d bytes %x...>", len(r.Image), r.Image[:min(4, len(r.Image))]))
	return r
}

func TestCleanedParquetFileFollowsTheDesign(t *testing.T) {
	data := writeCleaned(t, testRows(t, 60, 100_000), CleanedOptions{WithRejected: true, RowGroupBytes: 1 << 20})
	pf, err := file.NewParquetReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	defer pf.Close()
	md := pf.MetaData()

	// Row groups are cut by bytes: 60 rows of ~100 KB make six groups of about 1 MiB.
	if n := pf.NumRowGroups(); n != 6 {
		t.Errorf("%d row groups for 6 MB in 1 MiB groups", n)
	}
	for i := range md.NumRowGroups() {
		rg := md.RowGroup(i)
		for c := range rg.NumColumns() {
			col, err := rg.ColumnChunk(c)
			if err != nil {
				t.Fatal(err)
			}
			// Image bytes are entropy-coded already: zstd would cost CPU and save nothing.
			want := "ZSTD"
			if col.PathInSchema().String() == "image.bytes" {
				want = "UNCOMPRESSED"
			}
			if col.Compression().String() != want {
				t.Errorf("column %s compressed with %s, want %s", col.PathInSchema(), col.Compression(), want)
			}
			if col.PathInSchema().String() == "image.bytes" {
				if set, _ := col.StatsSet(); set {
					t.Error("the image column carries min/max statistics (whole images in the footer)")
				}
			}
		}
	}
	kv := md.KeyValueMetadata()
	for k, want := range map[string]string{
		"capfilt.version": "v0.1.0-test", "capfilt.run_id": "run-42", "capfilt.captioner": "blip-cap-tiny",
		"capfilt.filter": "blip-itm-tiny", "capfilt.thresholds": `{"itm":0.5}`, "capfilt.seed": "7", "capfilt.schema_version": "2",
		"capfilt.build": "abc123",
	} {
		if got := kv.FindValue(k); got == nil || *got != want {
			t.Errorf("key/value metadata %s = %v, want %q", k, got, want)
		}
	}
	// parquet-mr's VersionParser form, or Spark drops the string statistics.
	if got, want := md.GetCreatedBy(), "capfilt version v0.1.0-test (build abc123)"; got != want {
		t.Errorf("created_by %q, want %q", got, want)
	}
	var cols []string
	for i := range md.Schema.NumColumns() {
		cols = append(cols, md.Schema.Column(i).ColumnPath().String())
	}
	want := "key source_shard url image.bytes image.path width height captions.list.element.text captions.list.element.source " +
		"captions.list.element.itm captions.list.element.itc captioner filter meta rejected.list.element.text " +
		"rejected.list.element.source rejected.list.element.itm rejected.list.element.itc"
	if strings.Join(cols, " ") != want {
		t.Errorf("parquet columns\n %s\nwant\n %s", strings.Join(cols, " "), want)
	}
	if url := md.Schema.Column(2); url.MaxDefinitionLevel() != 1 {
		t.Errorf("url column is not nullable: max definition level %d", url.MaxDefinitionLevel())
	}
}

func TestCleanedWriterRefusesRowsThatBreakTheSchema(t *testing.T) {
	good := testRows(t, 1, 10)[0]
	cases := []struct {
		name   string
		mutate func(*CleanedRow)
		want   string
	}{
		{"no key", func(r *CleanedRow) { r.Key = "" }, "empty key"},
		{"no accepted caption", func(r *CleanedRow) { r.Captions = nil }, "no accepted caption"},
		{"unknown source", func(r *CleanedRow) { r.Captions[0].Source = "alien" }, `caption source "alien"`},
		{"meta not JSON", func(r *CleanedRow) { r.Meta = []byte("{oops") }, "meta is not UTF-8 JSON"},
		{"no image", func(r *CleanedRow) { r.Image = nil }, "no image bytes"},
		{"latin-1 caption", func(r *CleanedRow) { r.Captions[0].Text = "caf\xe9" }, "not UTF-8"},
		{"negative size", func(r *CleanedRow) { r.Width = -1 }, "out of range"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var buf bytes.Buffer
			w, err := NewCleanedWriter(&buf, testMeta, CleanedOptions{})
			if err != nil {
				t.Fatal(err)
			}
			row := good
			row.Captions = append([]Caption{}, good.Captions...)
			c.mutate(&row)
			if err := w.Write(row); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Write: %v, want an error saying %q", err, c.want)
			}
			if err := w.Write(good); err != nil { // the file goes on
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			_, rows := readCleaned(t, buf.Bytes(), CleanedReadOptions{})
			if len(rows) != 1 || rows[0].Key != good.Key {
				t.Fatalf("file holds %d rows after one refused and one good", len(rows))
			}
		})
	}
}

func TestOpenCleanedRefusesOtherParquet(t *testing.T) {
	other := writeTestParquet(t, arrow.NewSchema([]arrow.Field{{Name: "key", Type: arrow.BinaryTypes.String}}, nil), 10,
		func(b *array.RecordBuilder) { b.Field(0).(*array.StringBuilder).Append("k") })
	if _, err := OpenCleaned(bytes.NewReader(other), "other.parquet", CleanedReadOptions{}); err == nil ||
		!strings.Contains(err.Error(), "not a cleaned capfilt Parquet") || !strings.Contains(err.Error(), "other.parquet") {
		t.Fatalf("OpenCleaned on another schema: %v", err)
	}
	if _, err := OpenCleaned(bytes.NewReader([]byte("PAR1 nonsense PAR1")), "junk.parquet", CleanedReadOptions{}); err == nil {
		t.Fatal("OpenCleaned on junk succeeded")
	}
}

// The writer never closes what it writes to: publishing is the caller's call.
func TestCleanedWriterLeavesPublishingToTheCaller(t *testing.T) {
	w := &closeRecorder{}
	cw, err := NewCleanedWriter(w, testMeta, CleanedOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cw.Write(testRows(t, 1, 10)[0])
	if err := cw.Close(); err != nil {
		t.Fatal(err)
	}
	if w.closed {
		t.Fatal("CleanedWriter.Close closed the destination")
	}
	if !bytes.HasSuffix(w.Bytes(), []byte("PAR1")) {
		t.Fatal("file not finished")
	}
}

type closeRecorder struct {
	bytes.Buffer
	closed bool
}

func (c *closeRecorder) Close() error { c.closed = true; return nil }
