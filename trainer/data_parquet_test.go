package trainer

import (
	"bytes"
	"context"
	"path/filepath"
	"slices"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"github.com/capfilt/capfilt/shards"
)

// img2datasetParquet writes an input shard in img2dataset's Parquet layout, two rows
// per row group; a nil image is a failed download (a null cell).
func img2datasetParquet(t *testing.T, keys []string, images [][]byte, captions []string) []byte {
	t.Helper()
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "key", Type: arrow.BinaryTypes.String},
		{Name: "caption", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "jpg", Type: arrow.BinaryTypes.Binary, Nullable: true},
	}, nil)
	b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer b.Release()
	for i, k := range keys {
		b.Field(0).(*array.StringBuilder).Append(k)
		b.Field(1).(*array.StringBuilder).Append(captions[i])
		if images[i] == nil {
			b.Field(2).(*array.BinaryBuilder).AppendNull()
		} else {
			b.Field(2).(*array.BinaryBuilder).Append(images[i])
		}
	}
	rec := b.NewRecordBatch()
	defer rec.Release()
	var buf bytes.Buffer
	w, err := pqarrow.NewFileWriter(schema, &buf, parquet.NewWriterProperties(parquet.WithMaxRowGroupLength(2)), pqarrow.DefaultWriterProps())
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

func TestWebSourceReadsParquetInputShards(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "part-0.parquet"), img2datasetParquet(t,
		[]string{"p0", "p1", "p2", "p3", "p4"},
		[][]byte{jpegBytes(t, 30, 20, 1), nil, pngBytes(t, 20, 30, 2), jpegBytes(t, 25, 25, 3), jpegBytes(t, 40, 10, 4)},
		[]string{"a dog", "download failed", "a png", "a square", "a strip"}))
	d, err := OpenDataset(context.Background(), shards.OpenStore(shards.StoreConfig{}),
		[]DataSource{{Kind: SourceWeb, Location: filepath.Join(dir, "part-*.parquet")}}, DatasetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Len() != 4 || d.Skipped()[shards.SkipMissingImage] != 1 {
		t.Fatalf("%d samples, skipped %v", d.Len(), d.Skipped())
	}
	cfg := testLoaderConfig(2)
	cfg.World, cfg.Rank = 2, 1
	it, err := d.Epoch(context.Background(), 0, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	batches := drain(t, it)
	if len(batches) != 1 || batches[0].Len() != 2 {
		t.Fatalf("%d batches", len(batches))
	}
	for i, k := range batches[0].Keys {
		if !slices.Contains([]string{"p0", "p2", "p3", "p4"}, k) || batches[0].Sources[i] != CaptionWeb {
			t.Errorf("sample %s from %s", k, batches[0].Sources[i])
		}
	}
}
