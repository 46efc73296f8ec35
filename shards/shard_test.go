package shards

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

// webShard makes a WebDataset tar of n samples with imageBytes-byte images.
func webShard(t testing.TB, n, imageBytes int) (data []byte, images [][]byte) {
	var members []tarMember
	for i := range n {
		img := randomBytes(imageBytes, uint64(1000+i))
		images = append(images, img)
		key := fmt.Sprintf("%09d", i)
		members = append(members,
			tarMember{name: key + ".jpg", data: string(img)},
			tarMember{name: key + ".txt", data: fmt.Sprintf("caption %d", i)},
			tarMember{name: key + ".json", data: fmt.Sprintf(`{"url":"http://x/%d","width":64,"height":48}`, i)},
		)
	}
	return makeTar(t, members...), images
}

func TestOpenShardStreamsTarAndParquetFromEveryStore(t *testing.T) {
	ctx := context.Background()
	tarData, images := webShard(t, 40, 100_000) // a 4 MB shard
	var rows []img2datasetRow
	for i, img := range images {
		rows = append(rows, img2datasetRow{fmt.Sprintf("%09d", i), img, ptr(fmt.Sprintf("caption %d", i)), fmt.Sprintf("http://x/%d", i), 64, 48})
	}
	pqData := img2datasetParquet(t, 16, rows)

	for _, st := range storesUnderTest(t) {
		for name, data := range map[string][]byte{"shard-00000.tar": tarData, "shard-00000.parquet": pqData, "shard-00000.tar.gz": gzipBytes(t, tarData)} {
			t.Run(st.name+"/"+name, func(t *testing.T) {
				u := st.root.Join("in", name)
				put(t, st.store, u, data)
				r, err := OpenShard(ctx, st.store, u, ShardOptions{})
				if err != nil {
					t.Fatal(err)
				}
				defer r.Close()
				got, err := readSamples(r)
				if err != nil {
					t.Fatal(err)
				}
				if len(got) != len(images) {
					t.Fatalf("%d samples, want %d", len(got), len(images))
				}
				for i, s := range got {
					if s.SkipReason != "" || !bytes.Equal(s.Image, images[i]) || s.Caption != fmt.Sprintf("caption %d", i) || s.CaptionSource != SourceWeb ||
						s.URL != fmt.Sprintf("http://x/%d", i) || s.Width != 64 || s.Key != fmt.Sprintf("%09d", i) {
						t.Fatalf("sample %d: key %q skip %q caption %q url %q width %d, image equal %v",
							i, s.Key, s.SkipReason, s.Caption, s.URL, s.Width, bytes.Equal(s.Image, images[i]))
					}
				}
			})
		}
	}
}

func TestOpenShardErrors(t *testing.T) {
	ctx := context.Background()
	for _, st := range storesUnderTest(t) {
		t.Run(st.name, func(t *testing.T) {
			if _, err := OpenShard(ctx, st.store, st.root.Join("missing.tar"), ShardOptions{}); !errors.Is(err, ErrNotFound) {
				t.Errorf("missing tar: %v", err)
			}
			if _, err := OpenShard(ctx, st.store, st.root.Join("missing.parquet"), ShardOptions{}); !errors.Is(err, ErrNotFound) {
				t.Errorf("missing parquet: %v", err)
			}
			if _, err := OpenShard(ctx, st.store, st.root.Join("x.tar.gz"), ShardOptions{}); !errors.Is(err, ErrNotFound) {
				t.Errorf("missing .tar.gz: %v", err)
			}
			if _, err := OpenShard(ctx, st.store, st.root.Join("x.zip"), ShardOptions{}); err == nil || !strings.Contains(err.Error(), "unsupported format") {
				t.Errorf("a .zip: %v", err)
			}
		})
	}
}

// The path of one shard through a worker, on S3: stream the input, write the cleaned
// Parquet straight into an S3 object, publish it, read it back with ranged GETs.
func TestShardToCleanedParquetOnS3(t *testing.T) {
	srv, store := newTestS3(t, "bucket")
	ctx := context.Background()
	tarData, images := webShard(t, 80, 100_000) // 8 MB: the output goes up in parts
	srv.Put(t, "bucket", "in/shard-00007.tar", tarData)
	in := mustURL(t, "s3://bucket/in/shard-00007.tar")
	out := mustURL(t, "s3://bucket/out/")

	r, err := OpenShard(ctx, store, in, ShardOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	obj, err := store.Create(ctx, CleanedURL(out, in))
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Abort()
	cw, err := NewCleanedWriter(obj, testMeta, CleanedOptions{})
	if err != nil {
		t.Fatal(err)
	}
	stats := NewShardStats(in.String(), "run-42")
	for {
		s, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		stats.CountSample(s)
		keep := s.Key != "000000003"
		c := Caption{Text: s.Caption, Source: SourceWeb, ITM: 0.9, ITC: 0.5}
		if !keep {
			c.ITM = 0.1
		}
		stats.CountCaption(c, keep)
		stats.CountImage(keep)
		if keep {
			if err := cw.Write(CleanedRow{Key: s.Key, SourceShard: in.String(), URL: s.URL, Image: s.Image,
				Width: s.Width, Height: s.Height, Captions: []Caption{c}, Captioner: "cap", Filter: "itm"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := cw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := obj.Close(); err != nil {
		t.Fatal(err)
	}
	if err := stats.Check(); err != nil {
		t.Fatal(err)
	}
	if err := WriteStats(ctx, store, StatsURL(out, in), stats); err != nil {
		t.Fatal(err)
	}

	ra, err := store.OpenAt(ctx, mustURL(t, "s3://bucket/out/shard-00007.parquet"))
	if err != nil {
		t.Fatal(err)
	}
	defer ra.Close()
	cr, err := OpenCleaned(ra, "s3://bucket/out/shard-00007.parquet", CleanedReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer cr.Close()
	n := 0
	for {
		row, err := cr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		i := n
		if n >= 3 {
			i++ // sample 3 was filtered out
		}
		if row.Key != fmt.Sprintf("%09d", i) || !bytes.Equal(row.Image, images[i]) || row.Captions[0].Text != fmt.Sprintf("caption %d", i) {
			t.Fatalf("row %d: key %q caption %q, image equal %v", n, row.Key, row.Captions[0].Text, bytes.Equal(row.Image, images[i]))
		}
		n++
	}
	if n != 79 || stats.ImagesKept != 79 || stats.ImagesRejected != 1 {
		t.Fatalf("%d rows read back; stats kept %d rejected %d", n, stats.ImagesKept, stats.ImagesRejected)
	}
	if _, err := ReadStats(ctx, store, mustURL(t, "s3://bucket/out/shard-00007.stats.json")); err != nil {
		t.Fatal(err)
	}
}
