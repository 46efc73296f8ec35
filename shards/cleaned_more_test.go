package shards

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

func TestCleanedParquetTellsHFDatasetsItsFeatures(t *testing.T) {
	data := writeCleaned(t, testRows(t, 3, 500), CleanedOptions{WithRejected: true})
	pf, err := file.NewParquetReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	defer pf.Close()
	raw := pf.MetaData().KeyValueMetadata().FindValue("huggingface")
	if raw == nil {
		t.Fatal("no huggingface key/value metadata")
	}
	var hf struct {
		Info struct {
			Features map[string]json.RawMessage `json:"features"`
		} `json:"info"`
	}
	if err := json.Unmarshal([]byte(*raw), &hf); err != nil {
		t.Fatalf("huggingface metadata %q: %v", *raw, err)
	}
	feat := hf.Info.Features
	var image map[string]string
	if err := json.Unmarshal(feat["image"], &image); err != nil || image["_type"] != "Image" {
		t.Errorf("image feature %s, want {\"_type\": \"Image\"}", feat["image"])
	}
	var captions []map[string]map[string]string
	if err := json.Unmarshal(feat["captions"], &captions); err != nil || len(captions) != 1 ||
		captions[0]["text"]["dtype"] != "string" || captions[0]["itm"]["dtype"] != "float32" || captions[0]["source"]["_type"] != "Value" {
		t.Errorf("captions feature %s, want a list of one struct of Values", feat["captions"])
	}
	for name, dtype := range map[string]string{"key": "string", "width": "int32", "meta": "string", "filter": "string"} {
		var v map[string]string
		if json.Unmarshal(feat[name], &v) != nil || v["dtype"] != dtype || v["_type"] != "Value" {
			t.Errorf("%s feature %s, want a %s Value", name, feat[name], dtype)
		}
	}
	if _, ok := feat["rejected"]; !ok || len(feat) != 11 {
		t.Errorf("features for %d columns, want the 11 cleaned ones: %s", len(feat), *raw)
	}

	// HF uses a stored feature only where its Arrow type equals the column's, and its
	// types are nullable all the way down.
	fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{}, memory.DefaultAllocator)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := fr.Schema()
	if err != nil {
		t.Fatal(err)
	}
	var notNull func(path string, f arrow.Field)
	notNull = func(path string, f arrow.Field) {
		if !f.Nullable {
			t.Errorf("field %s%s is not nullable", path, f.Name)
		}
		if nt, ok := f.Type.(arrow.NestedType); ok {
			for _, c := range nt.Fields() {
				notNull(path+f.Name+".", c)
			}
		}
	}
	for _, f := range sc.Fields() {
		notNull("", f)
	}
	img := sc.Field(sc.FieldIndices("image")[0]).Type
	if !arrow.TypeEqual(img, arrow.StructOf(arrow.Field{Name: "bytes", Type: arrow.BinaryTypes.Binary, Nullable: true},
		arrow.Field{Name: "path", Type: arrow.BinaryTypes.String, Nullable: true})) {
		t.Errorf("image column is %s, want HF's Image struct", img)
	}
	// path names the image file after its key, with the extension its bytes say.
	rows := testRows(t, 1, 10)
	rows[0].Image = testJPEG(t, 4, 4)
	if got := imagePath(rows[0].Key, rows[0].Image); got != "000000000.jpg" {
		t.Errorf("image path %q", got)
	}
}

// Files written before the image became HF's struct still read.
func TestCleanedReaderReadsSchema1Files(t *testing.T) {
	capStruct := arrow.StructOf(
		arrow.Field{Name: "text", Type: arrow.BinaryTypes.String}, arrow.Field{Name: "source", Type: arrow.BinaryTypes.String},
		arrow.Field{Name: "itm", Type: arrow.PrimitiveTypes.Float32}, arrow.Field{Name: "itc", Type: arrow.PrimitiveTypes.Float32})
	str := func(name string) arrow.Field { return arrow.Field{Name: name, Type: arrow.BinaryTypes.String} }
	schema := arrow.NewSchema([]arrow.Field{str("key"), str("source_shard"), {Name: "url", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "image", Type: arrow.BinaryTypes.Binary}, {Name: "width", Type: arrow.PrimitiveTypes.Int32},
		{Name: "height", Type: arrow.PrimitiveTypes.Int32}, {Name: "captions", Type: arrow.ListOfNonNullable(capStruct)},
		str("captioner"), str("filter")}, nil)
	data := writeTestParquet(t, schema, 10, func(b *array.RecordBuilder) {
		b.Field(0).(*array.StringBuilder).Append("k1")
		b.Field(1).(*array.StringBuilder).Append("s.tar")
		b.Field(2).(*array.StringBuilder).AppendNull()
		b.Field(3).(*array.BinaryBuilder).Append([]byte("img"))
		b.Field(4).(*array.Int32Builder).Append(4)
		b.Field(5).(*array.Int32Builder).Append(3)
		lb := b.Field(6).(*array.ListBuilder)
		lb.Append(true)
		sb := lb.ValueBuilder().(*array.StructBuilder)
		sb.Append(true)
		sb.FieldBuilder(0).(*array.StringBuilder).Append("a cat")
		sb.FieldBuilder(1).(*array.StringBuilder).Append("web")
		sb.FieldBuilder(2).(*array.Float32Builder).Append(0.75)
		sb.FieldBuilder(3).(*array.Float32Builder).Append(0.25)
		b.Field(7).(*array.StringBuilder).Append("cap")
		b.Field(8).(*array.StringBuilder).Append("itm")
	})
	_, rows := readCleaned(t, data, CleanedReadOptions{})
	want := CleanedRow{Key: "k1", SourceShard: "s.tar", Image: []byte("img"), Width: 4, Height: 3,
		Captions: []Caption{{Text: "a cat", Source: "web", ITM: 0.75, ITC: 0.25}}, Captioner: "cap", Filter: "itm"}
	if len(rows) != 1 || !reflect.DeepEqual(rows[0], want) {
		t.Fatalf("rows %+v, want %+v", rows, want)
	}
}

// The sample's KEY.json reaches the output's meta column byte for byte.
func TestSourceJSONReachesTheMetaColumnByteForByte(t *testing.T) {
	meta := "{\"url\": \"http://x/0.jpg\",\n \"status\":\"success\", \"exif\": \"{\\\"Image Make\\\": \\\"Canon\\\"}\",\n" +
		" \"sha256\": \"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\", \"original_width\": 640, \"original_height\": 480, \"caption\": \"caf\u00e9 \\u00e9\"}"
	shard := makeTar(t, tarMember{name: "0.jpg", data: "img"}, tarMember{name: "0.txt", data: "c"}, tarMember{name: "0.json", data: meta},
		tarMember{name: "1.jpg", data: "img"}, tarMember{name: "1.txt", data: "no json"})
	samples, err := readSamples(OpenTar(bytes.NewReader(shard), "s.tar", Limits{}))
	if err != nil || len(samples) != 2 {
		t.Fatal(err)
	}
	var rows []CleanedRow
	for _, s := range samples {
		rows = append(rows, CleanedRow{Key: s.Key, SourceShard: "s.tar", Image: s.Image, Meta: s.MetaJSON,
			Captions: []Caption{{Text: s.Caption, Source: SourceWeb}}})
	}
	_, got := readCleaned(t, writeCleaned(t, rows, CleanedOptions{}), CleanedReadOptions{})
	if string(got[0].Meta) != meta || got[1].Meta != nil {
		t.Fatalf("meta read back %q, %q; want the KEY.json bytes and null", got[0].Meta, got[1].Meta)
	}
}

func TestKeptColumnsPassThroughTyped(t *testing.T) {
	jpg := testJPEG(t, 4, 4)
	data := laionParquet(t, jpg, 3, func(b *array.RecordBuilder, i int) {
		b.Field(2).(*array.Float64Builder).Append(0.3 + float64(i))
		if i == 2 {
			b.Field(3).(*array.Float32Builder).AppendNull()
		} else {
			b.Field(3).(*array.Float32Builder).Append(float32(i) / 4)
		}
		b.Field(4).(*array.Int64Builder).Append(int64(1000 * i))
	}, arrow.Field{Name: "similarity", Type: arrow.PrimitiveTypes.Float64},
		arrow.Field{Name: "pwatermark", Type: arrow.PrimitiveTypes.Float32, Nullable: true},
		arrow.Field{Name: "original_width", Type: arrow.PrimitiveTypes.Int64})
	r, err := OpenParquet(bytes.NewReader(data), "laion.parquet", ShardOptions{Columns: ParquetColumns{Keep: []string{"*"}}})
	if err != nil {
		t.Fatal(err)
	}
	samples, err := readSamples(r)
	r.Close()
	if err != nil {
		t.Fatal(err)
	}
	var rows []CleanedRow
	for _, s := range samples {
		rows = append(rows, CleanedRow{Key: s.Key, SourceShard: "laion.parquet", Image: s.Image, Kept: s.Kept,
			Captions: []Caption{{Text: s.Caption, Source: SourceWeb}}})
	}
	out := writeCleaned(t, rows, CleanedOptions{})
	pf, err := file.NewParquetReader(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	fr, _ := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{}, memory.DefaultAllocator)
	sc, _ := fr.Schema()
	for name, id := range map[string]arrow.Type{"similarity": arrow.FLOAT64, "pwatermark": arrow.FLOAT32, "original_width": arrow.INT64} {
		if idx := sc.FieldIndices(name); len(idx) != 1 || sc.Field(idx[0]).Type.ID() != id {
			t.Errorf("column %s missing or retyped in %s", name, sc)
		}
	}
	pf.Close()
	_, back := readCleaned(t, out, CleanedReadOptions{})
	for i, row := range back {
		if !reflect.DeepEqual(row.Kept.Values(), rows[i].Kept.Values()) {
			t.Errorf("row %d kept %v, wrote %v", i, row.Kept.Values(), rows[i].Kept.Values())
		}
	}
	if v := back[2].Kept.Values(); v["pwatermark"] != nil || v["original_width"] != int64(2000) {
		t.Errorf("row 2 kept %v", v)
	}

	// One file keeps one set of columns.
	var buf bytes.Buffer
	w, _ := NewCleanedWriter(&buf, testMeta, CleanedOptions{})
	if err := w.Write(rows[0]); err != nil {
		t.Fatal(err)
	}
	bare := rows[1]
	bare.Kept = KeptColumns{}
	if err := w.Write(bare); err == nil || !strings.Contains(err.Error(), "keeps columns") {
		t.Errorf("a row keeping other columns: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// A shard whose every image was rejected still gets a valid, empty file.
func TestCleanedWriterWithoutRowsWritesAnEmptyFile(t *testing.T) {
	r, rows := readCleaned(t, writeCleaned(t, nil, CleanedOptions{}), CleanedReadOptions{})
	if len(rows) != 0 || r.NumRows() != 0 || r.Meta().RunID != "run-42" {
		t.Fatalf("%d rows, meta %+v", len(rows), r.Meta())
	}
}
