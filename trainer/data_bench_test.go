package trainer

import (
	"context"
	"fmt"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/capfilt/capfilt/imageproc"
	"github.com/capfilt/capfilt/shards"
)

// benchDataset is 96 JPEGs of 320×240 in one tar.
func benchDataset(b *testing.B) *Dataset {
	b.Helper()
	dir := b.TempDir()
	var samples []tarSample
	for i := range 96 {
		samples = append(samples, tarSample{key: fmt.Sprintf("s%03d", i), ext: "jpg", image: jpegBytes(b, 320, 240, i), caption: strp("a photo of a thing")})
	}
	writeFile(b, filepath.Join(dir, "bench.tar"), tarBytes(b, samples))
	d, err := OpenDataset(context.Background(), shards.OpenStore(shards.StoreConfig{}),
		[]DataSource{{Kind: SourceWeb, Location: filepath.Join(dir, "bench.tar")}}, DatasetOptions{})
	if err != nil {
		b.Fatal(err)
	}
	return d
}

// BenchmarkLoader reports the loader's batches/s (batch 4, 320×240 JPEG sources,
// pretraining augmentation) at image sizes 64 and 224 with 1 and 2 decode workers,
// and, with a consumer that spends a fixed time per step (a sleep: a step on an
// accelerator leaves the CPU to the loader), the fraction of wall time it waits for
// data. One iteration is one epoch of 24 batches; batches/s and wait-fraction leave
// out the first batch of each epoch, which waits for the pool to start
// (first-batch-ms). cpu-ms/batch (user + system time of the process) does not depend
// on how busy the machine is; batches/s does.
//
//	go test ./trainer -run XXX -bench Loader -benchtime 3x
func BenchmarkLoader(b *testing.B) {
	d := benchDataset(b)
	for _, size := range []int{64, 224} {
		for _, workers := range []int{1, 2} {
			for _, step := range []time.Duration{0, 30 * time.Millisecond} {
				name := fmt.Sprintf("size=%d/workers=%d/step=%s", size, workers, step)
				b.Run(name, func(b *testing.B) {
					cfg := LoaderConfig{BatchSize: 4, Transform: imageproc.NewTrainTransform(size, imageproc.PretrainMinScale),
						Seed: 1, Workers: workers, Prefetch: 4, ShuffleBuffer: 64}
					var batches int
					var wait, total, first time.Duration
					cpu0 := processCPU()
					epoch := 0
					for b.Loop() {
						t0 := time.Now()
						it, err := d.Epoch(context.Background(), epoch, cfg, nil)
						if err != nil {
							b.Fatal(err)
						}
						for n := 0; ; n++ {
							if _, err := it.Next(); err != nil {
								break
							}
							if n == 0 {
								// The first batch waits for the pool to start: once an epoch.
								first += time.Since(t0)
								wait -= it.Stats().Wait
								t0 = time.Now()
							}
							batches++
							time.Sleep(step)
						}
						wait += it.Stats().Wait
						total += time.Since(t0)
						batches--
						epoch++
					}
					b.ReportMetric(float64(batches)/total.Seconds(), "batches/s")
					b.ReportMetric(wait.Seconds()/total.Seconds(), "wait-fraction")
					b.ReportMetric(float64((processCPU()-cpu0).Milliseconds())/float64(batches+epoch), "cpu-ms/batch")
					b.ReportMetric(float64(first.Milliseconds())/float64(epoch), "first-batch-ms")
				})
			}
		}
	}
}

// processCPU is the user + system CPU time of the process so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
