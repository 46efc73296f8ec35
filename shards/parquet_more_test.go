package shards

import (
	"bytes"
	"context"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
)

// hfTextParquet is an HF-datasets-like file: image struct and text, plus what extra
// builds in (id, LAION's scores).
func laionParquet(t testing.TB, jpg []byte, n int, extra func(b *array.RecordBuilder, i int), fields ...arrow.Field) []byte {
	schema := arrow.NewSchema(append([]arrow.Field{
		{Name: "image", Type: hfImageType, Nullable: true},
		{Name: "text", Type: arrow.BinaryTypes.String},
	}, fields...), nil)
	return writeTestParquet(t, schema, 100, func(b *array.RecordBuilder) {
		for i := range n {
			img := b.Field(0).(*array.StructBuilder)
			img.Append(true)
			img.FieldBuilder(0).(*array.BinaryBuilder).Append(jpg)
			img.FieldBuilder(1).(*array.StringBuilder).AppendNull()
			b.Field(1).(*array.StringBuilder).Append("caption")
			if extra != nil {
				extra(b, i)
			}
		}
	})
}

func TestKeylessParquetFilesGiveDistinctKeys(t *testing.T) {
	dir := t.TempDir()
	store := OpenStore(StoreConfig{})
	jpg := testJPEG(t, 4, 4)
	var keys []string
	for _, name := range []string{"train-00000.parquet", "train-00001.parquet"} {
		u := URL{Scheme: SchemeFile, Path: filepath.Join(dir, name)}
		put(t, store, u, laionParquet(t, jpg, 2, nil))
		r, err := OpenShard(context.Background(), store, u, ShardOptions{})
		if err != nil {
			t.Fatal(err)
		}
		got, err := readSamples(r)
		r.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range got {
			keys = append(keys, s.Key)
		}
	}
	want := []string{"train-00000/000000000", "train-00000/000000001", "train-00001/000000000", "train-00001/000000001"}
	if !reflect.DeepEqual(keys, want) {
		t.Fatalf("keys %v, want %v", keys, want)
	}
}

func TestParquetDetectsAnIDColumnAsTheKey(t *testing.T) {
	jpg := testJPEG(t, 4, 4)
	for _, c := range []struct {
		field arrow.Field
		fill  func(b array.Builder, i int)
		want  string
	}{
		{arrow.Field{Name: "id", Type: arrow.PrimitiveTypes.Int64}, func(b array.Builder, i int) { b.(*array.Int64Builder).Append(int64(100 + i)) }, "101"},
		{arrow.Field{Name: "uid", Type: arrow.BinaryTypes.String}, func(b array.Builder, i int) { b.(*array.StringBuilder).Append("u" + string(rune('a'+i))) }, "ub"},
		{arrow.Field{Name: "image_id", Type: arrow.PrimitiveTypes.Int32}, func(b array.Builder, i int) { b.(*array.Int32Builder).Append(int32(7 * i)) }, "7"},
	} {
		data := laionParquet(t, jpg, 2, func(b *array.RecordBuilder, i int) { c.fill(b.Field(2), i) }, c.field)
		r, err := OpenParquet(bytes.NewReader(data), "x.parquet", ShardOptions{})
		if err != nil {
			t.Fatal(err)
		}
		got, err := readSamples(r)
		r.Close()
		if err != nil || len(got) != 2 || got[1].Key != c.want {
			t.Errorf("%s column: %v, keys %v; want the second %q", c.field.Name, err, skipReasons(got), c.want)
		}
	}
}

func TestParquetKeyThatRepeatsIsCountedAsADuplicate(t *testing.T) {
	jpg := testJPEG(t, 4, 4)
	data := img2datasetParquet(t, 100, []img2datasetRow{
		{"a", jpg, ptr("one"), "", 0, 0}, {"b", jpg, ptr("two"), "", 0, 0}, {"a", jpg, ptr("again"), "", 0, 0},
	})
	r, err := OpenParquet(bytes.NewReader(data), "p.parquet", ShardOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got, err := readSamples(r)
	if err != nil || strings.Join(skipReasons(got), " ") != "a: b: a:"+SkipDuplicateKey {
		t.Fatalf("%v, samples %v", err, skipReasons(got))
	}
}

func TestListCaptionColumnYieldsEveryCaption(t *testing.T) {
	jpg := testJPEG(t, 4, 4)
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "image", Type: arrow.BinaryTypes.Binary},
		{Name: "sentences", Type: arrow.ListOf(arrow.BinaryTypes.String), Nullable: true},
	}, nil)
	rows := [][]*string{
		{ptr("a dog on grass"), ptr("  a brown dog  "), ptr(" "), nil, ptr("caf\xe9"), ptr("the dog runs")},
		{ptr(" "), nil}, // not one usable caption
		{},              // an empty list
		nil,             // a null list
		{ptr("1"), ptr("2"), ptr("3"), ptr("4")},
	}
	data := writeTestParquet(t, schema, 100, func(b *array.RecordBuilder) {
		for _, caps := range rows {
			b.Field(0).(*array.BinaryBuilder).Append(jpg)
			lb := b.Field(1).(*array.ListBuilder)
			if caps == nil {
				lb.AppendNull()
				continue
			}
			lb.Append(true)
			vb := lb.ValueBuilder().(*array.StringBuilder)
			for _, c := range caps {
				appendNullable(vb.Append, vb.AppendNull, c)
			}
		}
	})
	r, err := OpenParquet(bytes.NewReader(data), "coco.parquet", ShardOptions{Columns: ParquetColumns{Caption: "sentences"}, Limits: Limits{MaxCaptions: 3}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got, err := readSamples(r)
	if err != nil || len(got) != 5 {
		t.Fatalf("%v, %d samples", err, len(got))
	}
	want := []struct {
		captions []string
		dropped  []string
		skip     string
	}{
		{[]string{"a dog on grass", "a brown dog", "the dog runs"}, []string{SkipEmptyCaption, SkipMissingCaption, SkipNonUTF8Caption}, ""},
		{nil, nil, SkipEmptyCaption},
		{nil, nil, SkipMissingCaption},
		{nil, nil, SkipMissingCaption},
		{[]string{"1", "2", "3"}, []string{SkipTooManyCaptions}, ""},
	}
	for i, w := range want {
		s := got[i]
		if !reflect.DeepEqual(s.Captions, w.captions) || !reflect.DeepEqual(s.DroppedCaptions, w.dropped) || s.SkipReason != w.skip ||
			(w.skip == "" && (s.Caption != w.captions[0] || s.CaptionSource != SourceWeb)) {
			t.Errorf("sample %d: captions %q dropped %v skip %q caption %q, want %q %v %q", i, s.Captions, s.DroppedCaptions, s.SkipReason, s.Caption, w.captions, w.dropped, w.skip)
		}
	}
	st := NewShardStats("coco.parquet", "r")
	for _, s := range got {
		st.CountSample(s)
	}
	if st.CaptionsDropped[SkipEmptyCaption] != 1 || st.CaptionsDropped[SkipTooManyCaptions] != 1 || st.SamplesSkipped != 3 {
		t.Errorf("stats: dropped %v, skipped %d", st.CaptionsDropped, st.SamplesSkipped)
	}
}

func TestHumanCaptionsAreMarkedHuman(t *testing.T) {
	store := OpenStore(StoreConfig{})
	u := URL{Scheme: SchemeFile, Path: filepath.Join(t.TempDir(), "coco.tar")}
	data, _ := webShard(t, 2, 100)
	put(t, store, u, data)
	r, err := OpenShard(context.Background(), store, u, ShardOptions{HumanCaptions: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got, err := readSamples(r)
	if err != nil || len(got) != 2 || got[0].CaptionSource != SourceHuman || got[1].CaptionSource != SourceHuman {
		t.Fatalf("%v, %d samples, sources %q", err, len(got), got[0].CaptionSource)
	}
}

func TestParquetKeepsAskedColumnsTyped(t *testing.T) {
	jpg := testJPEG(t, 4, 4)
	fields := []arrow.Field{
		{Name: "similarity", Type: arrow.PrimitiveTypes.Float64},
		{Name: "punsafe", Type: arrow.PrimitiveTypes.Float32, Nullable: true},
		{Name: "URL", Type: arrow.BinaryTypes.String},
		{Name: "tags", Type: arrow.ListOf(arrow.BinaryTypes.String)},
	}
	data := laionParquet(t, jpg, 3, func(b *array.RecordBuilder, i int) {
		b.Field(2).(*array.Float64Builder).Append(0.25 + float64(i))
		if i == 1 {
			b.Field(3).(*array.Float32Builder).AppendNull()
		} else {
			b.Field(3).(*array.Float32Builder).Append(0.5)
		}
		b.Field(4).(*array.StringBuilder).Append("http://x/" + string(rune('a'+i)))
		lb := b.Field(5).(*array.ListBuilder)
		lb.Append(true)
		lb.ValueBuilder().(*array.StringBuilder).Append("t")
	}, fields...)
	read := func(keep ...string) ([]Sample, error) {
		r, err := OpenParquet(bytes.NewReader(data), "laion.parquet", ShardOptions{Columns: ParquetColumns{Keep: keep}})
		if err != nil {
			return nil, err
		}
		defer r.Close()
		return readSamples(r)
	}
	got, err := read("punsafe", "similarity")
	if err != nil {
		t.Fatal(err)
	}
	if names := got[1].Kept.Names(); !reflect.DeepEqual(names, []string{"similarity", "punsafe"}) {
		t.Fatalf("kept %v; want input order", names)
	}
	if v := got[1].Kept.Values(); v["similarity"] != 1.25 || v["punsafe"] != nil {
		t.Errorf("row 1 kept %v", v)
	}
	if got[1].Kept.fields[0].Type.ID() != arrow.FLOAT64 || got[0].Kept.fields[1].Type.ID() != arrow.FLOAT32 {
		t.Errorf("types not kept: %v", got[1].Kept.fields)
	}
	// "*": everything the output does not hold already; "URL" is the url column (and
	// would clash with it in DuckDB), the image and caption are the sample's.
	all, err := read("*")
	if err != nil {
		t.Fatal(err)
	}
	if names := all[0].Kept.Names(); !reflect.DeepEqual(names, []string{"similarity", "punsafe", "tags"}) {
		t.Errorf(`"*" kept %v`, names)
	}
	if all[0].URL != "" {
		t.Logf("url %q", all[0].URL)
	}
	for _, c := range []struct {
		keep []string
		want string
	}{
		{[]string{"nsfw"}, `no column "nsfw"`},
		{[]string{"URL"}, "clash"},
		{[]string{"image"}, "clash"},
		{[]string{"similarity", "similarity"}, "twice"},
		{[]string{"similarity", "*"}, "goes alone"},
	} {
		if _, err := read(c.keep...); err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "laion.parquet") {
			t.Errorf("keep %v: %v, want an error saying %q", c.keep, err, c.want)
		}
	}
}
