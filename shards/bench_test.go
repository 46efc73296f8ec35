package shards

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/capfilt/capfilt/internal/testutil"
)

// Benchmarks report MB/s of shard bytes (b.SetBytes). Images are random bytes, as
// incompressible as JPEG.

func benchTarShard(b *testing.B) []byte {
	data, _ := webShard(b, 200, 100_000) // 20 MB
	return data
}

func drainShard(b *testing.B, store Store, u URL) {
	r, err := OpenShard(context.Background(), store, u, ShardOptions{})
	if err != nil {
		b.Fatal(err)
	}
	n := 0
	for {
		_, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			b.Fatal(err)
		}
		n++
	}
	r.Close()
	if n == 0 {
		b.Fatal("no samples")
	}
}

func BenchmarkTarRead(b *testing.B) {
	data := benchTarShard(b)
	b.Run("local", func(b *testing.B) {
		path := filepath.Join(b.TempDir(), "shard.tar")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			b.Fatal(err)
		}
		store, u := OpenStore(StoreConfig{}), URL{Scheme: SchemeFile, Path: path}
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			drainShard(b, store, u)
		}
	})
	b.Run("s3", func(b *testing.B) {
		srv := testutil.StartS3(b, "bucket")
		srv.Put(b, "bucket", "shard.tar", data)
		store := OpenStore(StoreConfig{S3Endpoint: srv.Endpoint, S3Region: srv.Region, S3PathStyle: true, S3Credentials: srv.Credentials()})
		u := URL{Scheme: SchemeS3, Bucket: "bucket", Path: "shard.tar"}
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			drainShard(b, store, u)
		}
	})
}

func BenchmarkParquetInputRead(b *testing.B) {
	var rows []img2datasetRow
	for i := range 200 {
		rows = append(rows, img2datasetRow{key: "k", jpg: randomBytes(100_000, uint64(i)), caption: ptr("a caption"), url: "u"})
	}
	data := img2datasetParquet(b, 100, rows)
	srv := testutil.StartS3(b, "bucket")
	srv.Put(b, "bucket", "shard.parquet", data)
	store := OpenStore(StoreConfig{S3Endpoint: srv.Endpoint, S3Region: srv.Region, S3PathStyle: true, S3Credentials: srv.Credentials()})
	b.Run("s3", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			drainShard(b, store, URL{Scheme: SchemeS3, Bucket: "bucket", Path: "shard.parquet"})
		}
	})
}

// 1,000 rows with 100 KB images, the benchmark.
func benchCleanedRows(b *testing.B) (rows []CleanedRow, imageBytes int64) {
	rows = testRows(b, 1000, 100_000)
	for _, r := range rows {
		imageBytes += int64(len(r.Image))
	}
	return rows, imageBytes
}

// BenchmarkCleanedWrite writes the cleaned Parquet as it is written (image bytes
// uncompressed, the rest zstd) and, for the ratio, with zstd on the images too, as schema
// 1 did: go test -bench CleanedWrite ./shards.
func BenchmarkCleanedWrite(b *testing.B) {
	rows, size := benchCleanedRows(b)
	var cpuPerOp [2]float64
	for i, opts := range []CleanedOptions{{}, {zstdImages: true}} {
		name := map[bool]string{false: "image-uncompressed", true: "image-zstd"}[opts.zstdImages]
		b.Run(name, func(b *testing.B) {
			var buf bytes.Buffer
			b.SetBytes(size)
			// CPU time, not only wall time: on a shared machine it is what stays comparable.
			cpu0 := processCPU()
			for b.Loop() {
				buf.Reset()
				w, err := NewCleanedWriter(&buf, testMeta, opts)
				if err != nil {
					b.Fatal(err)
				}
				for _, r := range rows {
					if err := w.Write(r); err != nil {
						b.Fatal(err)
					}
				}
				if err := w.Close(); err != nil {
					b.Fatal(err)
				}
			}
			cpuPerOp[i] = float64(processCPU()-cpu0) / float64(b.N)
			b.ReportMetric(cpuPerOp[i]/1e6, "cpu-ms/op")
			b.ReportMetric(float64(buf.Len())/float64(size), "file/image-bytes")
			if i == 1 && cpuPerOp[0] > 0 {
				b.ReportMetric(cpuPerOp[0]/cpuPerOp[1], "uncompressed/zstd-cpu")
			}
		})
	}
}

// processCPU is the user and system CPU time the process has used, in nanoseconds.
func processCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

func BenchmarkCleanedRead(b *testing.B) {
	rows, size := benchCleanedRows(b)
	data := writeCleaned(b, rows, CleanedOptions{})
	b.SetBytes(size)
	for b.Loop() {
		r, err := OpenCleaned(bytes.NewReader(data), "bench.parquet", CleanedReadOptions{})
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		for {
			_, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			n++
		}
		r.Close()
		if n != len(rows) {
			b.Fatalf("read %d rows", n)
		}
	}
}
