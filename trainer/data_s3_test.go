package trainer

import (
	"context"
	"testing"
	"time"

	"github.com/capfilt/capfilt/internal/testutil"
	"github.com/capfilt/capfilt/shards"
)

// Cleaned Parquet (read with ranged GETs), a tar shard and a COCO JSON whose images
// are objects, all on the in-process S3 server.
func TestEpochReadsEverySourceKindFromS3(t *testing.T) {
	srv := testutil.StartS3(t, "data")
	store := shards.OpenStore(shards.StoreConfig{S3Endpoint: srv.Endpoint, S3Region: srv.Region, S3PathStyle: true,
		S3Credentials: srv.Credentials(), S3MaxBackoff: 20 * time.Millisecond})
	srv.Put(t, "data", "run1/part-00000.parquet", cleanedParquet(t, []shards.CleanedRow{
		{Key: "c0", Image: jpegBytes(t, 40, 30, 1), Width: 40, Height: 30, Captions: caps("web", "a red ball", "synthetic", "a ball on grass")},
		{Key: "c1", Image: pngBytes(t, 30, 40, 2), Width: 30, Height: 40, Captions: caps("synthetic", "a blue box")},
	}))
	srv.Put(t, "data", "run1/part-00001.parquet", cleanedParquet(t, []shards.CleanedRow{
		{Key: "c2", Image: jpegBytes(t, 35, 35, 3), Width: 35, Height: 35, Captions: caps("web", "a tree")},
	}))
	srv.Put(t, "data", "web/00000.tar", tarBytes(t, []tarSample{
		{key: "w0", ext: "jpg", image: jpegBytes(t, 32, 32, 4), caption: strp("a car")},
	}))
	srv.Put(t, "data", "coco/ann.json", jsonBytes(t, []map[string]any{{"image": "val/1.png", "caption": "a boat", "image_id": 1}}))
	srv.Put(t, "data", "coco/val/1.png", pngBytes(t, 28, 20, 5))
	sources := []DataSource{}
	for _, spec := range []string{"cleaned:s3://data/run1/part-{00000..00001}.parquet", "web:s3://data/web/*.tar", "coco:s3://data/coco/ann.json"} {
		s, err := ParseDataSource(spec)
		if err != nil {
			t.Fatal(err)
		}
		sources = append(sources, s)
	}
	d, err := OpenDataset(context.Background(), store, sources, DatasetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Len() != 5 {
		t.Fatalf("%d samples, want 5", d.Len())
	}
	it, err := d.Epoch(context.Background(), 0, testLoaderConfig(5), nil)
	if err != nil {
		t.Fatal(err)
	}
	batches := drain(t, it)
	if len(batches) != 1 {
		t.Fatalf("%d batches", len(batches))
	}
	keys := map[string]bool{}
	for _, k := range batches[0].Keys {
		keys[k] = true
	}
	for _, k := range []string{"c0", "c1", "c2", "w0", "1"} {
		if !keys[k] {
			t.Errorf("sample %s missing from %v", k, batches[0].Keys)
		}
	}
	if st := it.Stats(); len(st.Skipped) != 0 {
		t.Errorf("skipped %v", st.Skipped)
	}
}
