package shards

import (
	"bytes"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

// writeTestParquet writes rows built by fill into a Parquet file with row groups of
// rowGroupRows rows, the way an upstream tool would.
func writeTestParquet(t testing.TB, schema *arrow.Schema, rowGroupRows int64, fill func(b *array.RecordBuilder)) []byte {
	t.Helper()
	b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer b.Release()
	fill(b)
	rec := b.NewRecordBatch()
	defer rec.Release()
	var buf bytes.Buffer
	props := parquet.NewWriterProperties(parquet.WithMaxRowGroupLength(rowGroupRows))
	w, err := pqarrow.NewFileWriter(schema, &buf, props, pqarrow.DefaultWriterProps())
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(rec); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func appendNullable[T any](app func(T), null func(), v *T) {
	if v == nil {
		null()
	} else {
		app(*v)
	}
}

func ptr[T any](v T) *T { return &v }

// img2datasetRow is a row of img2dataset's Parquet output.
type img2datasetRow struct {
	key     string
	jpg     []byte // nil: download failed
	caption *string
	url     string
	width   int64
	height  int64
}

func img2datasetParquet(t testing.TB, rowGroupRows int64, rows []img2datasetRow) []byte {
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "key", Type: arrow.BinaryTypes.String},
		{Name: "caption", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "url", Type: arrow.BinaryTypes.String},
		{Name: "width", Type: arrow.PrimitiveTypes.Int64},
		{Name: "height", Type: arrow.PrimitiveTypes.Int64},
		{Name: "status", Type: arrow.BinaryTypes.String},
		{Name: "jpg", Type: arrow.BinaryTypes.Binary, Nullable: true},
	}, nil)
	return writeTestParquet(t, schema, rowGroupRows, func(b *array.RecordBuilder) {
		for _, r := range rows {
			b.Field(0).(*array.StringBuilder).Append(r.key)
			cb := b.Field(1).(*array.StringBuilder)
			appendNullable(cb.Append, cb.AppendNull, r.caption)
			b.Field(2).(*array.StringBuilder).Append(r.url)
			b.Field(3).(*array.Int64Builder).Append(r.width)
			b.Field(4).(*array.Int64Builder).Append(r.height)
			jb := b.Field(6).(*array.BinaryBuilder)
			if r.jpg == nil {
				b.Field(5).(*array.StringBuilder).Append("failed_to_download")
				jb.AppendNull()
			} else {
				b.Field(5).(*array.StringBuilder).Append("success")
				jb.Append(r.jpg)
			}
		}
	})
}

func TestParquetReadsImg2datasetLayout(t *testing.T) {
	jpg, png := testJPEG(t, 20, 10), testPNG(t, 4, 4)
	rows := []img2datasetRow{
		{"000000000", jpg, ptr("a dog on a beach"), "http://x/0", 20, 10},
		{"000000001", nil, ptr("download failed"), "http://x/1", 0, 0},
		{"000000002", png, ptr(" a png \n"), "http://x/2", 4, 4},
		{"000000003", jpg, nil, "http://x/3", 20, 10},
		{"000000004", jpg, ptr("last"), "http://x/4", 20, 10},
	}
	data := img2datasetParquet(t, 2, rows) // three row groups: batches cross them
	r, err := OpenParquet(bytes.NewReader(data), "p.parquet", ShardOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got, err := readSamples(r)
	if err != nil {
		t.Fatal(err)
	}
	want := []Sample{
		{Key: "000000000", URL: "http://x/0", Image: jpg, ImageExt: "jpg", Caption: "a dog on a beach", Width: 20, Height: 10},
		{Key: "000000001", URL: "http://x/1", SkipReason: SkipMissingImage},
		{Key: "000000002", URL: "http://x/2", Image: png, ImageExt: "png", Caption: "a png", Width: 4, Height: 4},
		{Key: "000000003", URL: "http://x/3", Width: 20, Height: 10, SkipReason: SkipMissingCaption},
		{Key: "000000004", URL: "http://x/4", Image: jpg, ImageExt: "jpg", Caption: "last", Width: 20, Height: 10},
	}
	compareSamples(t, got, want)
}

func compareSamples(t *testing.T, got, want []Sample) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d samples %v, want %d", len(got), skipReasons(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Key != w.Key || g.URL != w.URL || !bytes.Equal(g.Image, w.Image) || g.ImageExt != w.ImageExt ||
			g.Caption != w.Caption || g.CaptionTruncated != w.CaptionTruncated || g.Width != w.Width || g.Height != w.Height || g.SkipReason != w.SkipReason {
			t.Errorf("sample %d = {key %q url %q %d bytes %q caption %q trunc %v %dx%d skip %q}\nwant {key %q url %q %d bytes %q caption %q trunc %v %dx%d skip %q}", i,
				g.Key, g.URL, len(g.Image), g.ImageExt, g.Caption, g.CaptionTruncated, g.Width, g.Height, g.SkipReason,
				w.Key, w.URL, len(w.Image), w.ImageExt, w.Caption, w.CaptionTruncated, w.Width, w.Height, w.SkipReason)
		}
	}
}

// hfImageType is HF datasets' Image feature as it lands in Parquet.
var hfImageType = arrow.StructOf(
	arrow.Field{Name: "bytes", Type: arrow.BinaryTypes.Binary, Nullable: true},
	arrow.Field{Name: "path", Type: arrow.BinaryTypes.String, Nullable: true},
)

func TestParquetReadsHFDatasetsLayout(t *testing.T) {
	jpg := testJPEG(t, 8, 8)
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "image", Type: hfImageType, Nullable: true},
		{Name: "text", Type: arrow.BinaryTypes.String},
	}, nil)
	data := writeTestParquet(t, schema, 100, func(b *array.RecordBuilder) {
		img := b.Field(0).(*array.StructBuilder)
		texts := b.Field(1).(*array.StringBuilder)
		for i, text := range []string{"first", "no image here", "third"} {
			if i == 1 {
				img.AppendNull()
			} else {
				img.Append(true)
				img.FieldBuilder(0).(*array.BinaryBuilder).Append(jpg)
				img.FieldBuilder(1).(*array.StringBuilder).Append("img.jpg")
			}
			texts.Append(text)
		}
	})
	r, err := OpenParquet(bytes.NewReader(data), "hf.parquet", ShardOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got, err := readSamples(r)
	if err != nil {
		t.Fatal(err)
	}
	compareSamples(t, got, []Sample{
		{Key: "hf/000000000", Image: jpg, ImageExt: "jpg", Caption: "first"},
		{Key: "hf/000000001", SkipReason: SkipMissingImage},
		{Key: "hf/000000002", Image: jpg, ImageExt: "jpg", Caption: "third"},
	})
}

func TestParquetExplicitColumnsOverrideDetection(t *testing.T) {
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "caption", Type: arrow.BinaryTypes.String},
		{Name: "alt_text", Type: arrow.BinaryTypes.Binary},
		{Name: "pixels", Type: arrow.BinaryTypes.LargeBinary},
		{Name: "id", Type: arrow.PrimitiveTypes.Int32},
	}, nil)
	data := writeTestParquet(t, schema, 10, func(b *array.RecordBuilder) {
		b.Field(0).(*array.StringBuilder).Append("the detected caption")
		b.Field(1).(*array.BinaryBuilder).Append([]byte("the chosen caption"))
		b.Field(2).(*array.BinaryBuilder).Append([]byte("\x89PNG\r\n\x1a\nrest"))
		b.Field(3).(*array.Int32Builder).Append(42)
	})
	r, err := OpenParquet(bytes.NewReader(data), "p.parquet", ShardOptions{Columns: ParquetColumns{Image: "pixels", Caption: "alt_text", Key: "id"}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got, err := readSamples(r)
	if err != nil {
		t.Fatal(err)
	}
	compareSamples(t, got, []Sample{{Key: "42", Image: []byte("\x89PNG\r\n\x1a\nrest"), ImageExt: "png", Caption: "the chosen caption"}})
}

func TestParquetWithoutUsableColumnsSaysWhich(t *testing.T) {
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "photo", Type: arrow.BinaryTypes.Binary},
		{Name: "caption", Type: arrow.BinaryTypes.String},
		{Name: "score", Type: arrow.PrimitiveTypes.Float32},
	}, nil)
	data := writeTestParquet(t, schema, 10, func(b *array.RecordBuilder) {
		b.Field(0).(*array.BinaryBuilder).Append([]byte("x"))
		b.Field(1).(*array.StringBuilder).Append("c")
		b.Field(2).(*array.Float32Builder).Append(1)
	})
	cases := []struct {
		cols ParquetColumns
		want []string
	}{
		{ParquetColumns{}, []string{"no image column", "photo, caption, score", "--image-column"}},
		{ParquetColumns{Image: "jpg"}, []string{`image column "jpg" not found`}},
		{ParquetColumns{Image: "photo", Caption: "score"}, []string{`caption column "score"`, "float32"}},
		{ParquetColumns{Image: "caption"}, []string{`image column "caption" has type utf8`}},
	}
	for _, c := range cases {
		_, err := OpenParquet(bytes.NewReader(data), "bad.parquet", ShardOptions{Columns: c.cols})
		if err == nil {
			t.Errorf("%+v: opened", c.cols)
			continue
		}
		for _, w := range append(c.want, "bad.parquet") {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%+v: error %q does not say %q", c.cols, err, w)
			}
		}
	}
}

func TestParquetAppliesTheSampleLimits(t *testing.T) {
	jpg := testJPEG(t, 8, 8)
	long := strings.Repeat("ab", 100)
	rows := []img2datasetRow{
		{"big", bytes.Repeat(jpg, 10), ptr("too big"), "", 0, 0},
		{"long", jpg, ptr(long), "", 0, 0},
		{"blank", jpg, ptr("   "), "", 0, 0},
		{"../../escape", jpg, ptr("unsafe key"), "", 0, 0},
	}
	data := img2datasetParquet(t, 100, rows)
	r, err := OpenParquet(bytes.NewReader(data), "p.parquet", ShardOptions{Limits: Limits{MaxMemberBytes: int64(len(jpg) * 2), MaxCaptionBytes: 51}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got, err := readSamples(r)
	if err != nil {
		t.Fatal(err)
	}
	compareSamples(t, got, []Sample{
		{Key: "big", SkipReason: SkipMemberTooLarge},
		{Key: "long", Image: jpg, ImageExt: "jpg", Caption: long[:51], CaptionTruncated: true},
		{Key: "blank", Image: jpg, ImageExt: "jpg", SkipReason: SkipEmptyCaption},
		{Key: "../../escape", SkipReason: SkipUnsafePath},
	})
}

func TestBrokenParquetIsAnErrorNotAPanic(t *testing.T) {
	data := img2datasetParquet(t, 2, []img2datasetRow{
		{"a", testJPEG(t, 8, 8), ptr("a"), "", 0, 0}, {"b", testJPEG(t, 8, 8), ptr("b"), "", 0, 0},
		{"c", testJPEG(t, 8, 8), ptr("c"), "", 0, 0},
	})
	cases := map[string][]byte{
		"empty":        {},
		"not parquet":  []byte(strings.Repeat("garbage!", 100)),
		"cut footer":   data[:len(data)-10],
		"cut in half":  append(append([]byte{}, data[:len(data)/2]...), data[len(data)-8:]...),
		"zeroed pages": append(make([]byte, len(data)-2000), data[len(data)-2000:]...),
	}
	for name, bad := range cases {
		t.Run(name, func(t *testing.T) {
			r, err := OpenParquet(bytes.NewReader(bad), "bad.parquet", ShardOptions{})
			if err == nil {
				_, err = readSamples(r)
				r.Close()
			}
			if err == nil {
				t.Fatal("a broken file read without error")
			}
			if !strings.Contains(err.Error(), "bad.parquet") {
				t.Errorf("error %q does not name the shard", err)
			}
		})
	}
}
