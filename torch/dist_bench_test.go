package torch

// Benchmarks of the collectives between two local processes: this one is rank 0 and
// times; a child process is rank 1 and runs the same body, so both issue the same
// collectives in the same order. Run with e.g.
//
//	go test ./torch -run '^$' -bench 'AllReduce|GradSync' -benchtime 10x

import (
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"
)

const (
	envBench    = "CAPFILT_DIST_BENCH"
	envBenchArg = "CAPFILT_DIST_BENCH_ARG"
	envBenchN   = "CAPFILT_DIST_BENCH_N"
)

// benchBody runs n rounds of collectives and reports each timed part by name.
type benchBody func(pg *ProcessGroup, arg int64, n int, record func(part string, d time.Duration)) error

// benchBodies are registered at init so the child rank finds them too.
var benchBodies = map[string]benchBody{
	"allreduce": allReduceBody,
	"buckets":   allReduceBucketsBody,
	"gradsync":  gradSyncOverlapBody,
}

func init() {
	childRoles["bench"] = func(t *testing.T, pg *ProcessGroup, out string) {
		n, err1 := strconv.Atoi(os.Getenv(envBenchN))
		arg, err2 := strconv.ParseInt(os.Getenv(envBenchArg), 10, 64)
		body, ok := benchBodies[os.Getenv(envBench)]
		if err1 != nil || err2 != nil || !ok {
			t.Fatalf("bad benchmark settings: %v %v %q", err1, err2, os.Getenv(envBench))
		}
		if err := body(pg, arg, n, func(string, time.Duration) {}); err != nil {
			t.Fatal(err)
		}
	}
}

// runTwoRanks runs a body as rank 0 here and as rank 1 in a child, and returns rank 0's
// total time per part.
func runTwoRanks(b *testing.B, name string, arg int64) map[string]time.Duration {
	body := benchBodies[name]
	job := newJob(b, "bench", 2, time.Minute, envBench+"="+name, envBenchArg+"="+strconv.FormatInt(arg, 10),
		envBenchN+"="+strconv.Itoa(b.N))
	child := job.start(b, 1)
	pg, err := NewProcessGroup(DistConfig{DistEnv: DistEnv{Rank: 0, WorldSize: 2, MasterAddr: "127.0.0.1", MasterPort: job.port,
		GlooInterfaces: []string{"lo"}}, Timeout: time.Minute})
	if err != nil {
		b.Fatalf("%v\nrank 1:\n%s", err, child.output)
	}
	defer pg.Close()
	parts := map[string]time.Duration{}
	b.ResetTimer()
	if err := body(pg, arg, b.N, func(part string, d time.Duration) { parts[part] += d }); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	waitAll(b, []*rankProc{child}, time.Minute)
	return parts
}

func timed(record func(string, time.Duration), part string, f func() error) error {
	start := time.Now()
	err := f()
	record(part, time.Since(start))
	return err
}

// BenchmarkAllReduce is the all-reduce throughput of one float32 tensor between two
// local processes (bytes of the tensor per second of the call).
func BenchmarkAllReduce(b *testing.B) {
	for _, mb := range []int64{1, 8, 64} {
		b.Run(fmt.Sprintf("%dMB", mb), func(b *testing.B) {
			parts := runTwoRanks(b, "allreduce", mb)
			b.ReportMetric(float64(mb<<20)*float64(b.N)/parts["allreduce"].Seconds()/1e6, "MB/s")
		})
	}
}

func allReduceBody(pg *ProcessGroup, mb int64, n int, record func(string, time.Duration)) error {
	x := Ones(Float32, CPU, mb<<20/4)
	defer x.Free()
	ts := []*Tensor{x}
	if err := pg.AllReduce(ts, DistSum, DefaultBucketBytes); err != nil { // warm-up
		return err
	}
	for i := 0; i < n; i++ {
		if err := timed(record, "allreduce", func() error { return pg.AllReduce(ts, DistSum, DefaultBucketBytes) }); err != nil {
			return err
		}
	}
	return nil
}

const bucketsCount, bucketsElems = 256, 16 << 10

// BenchmarkAllReduceBuckets all-reduces 256 tensors of 64 KiB (16 MiB, like a small
// model's gradients) packed into buckets of the given size, against one all-reduce per
// tensor, alternating in each round; ratio is bucketed MB/s over per-tensor MB/s.
func BenchmarkAllReduceBuckets(b *testing.B) {
	for _, bucket := range []int64{256 << 10, 1 << 20, DefaultBucketBytes} {
		b.Run(fmt.Sprintf("bucket=%dKB", bucket>>10), func(b *testing.B) {
			parts := runTwoRanks(b, "buckets", bucket)
			total := float64(bucketsCount*bucketsElems*4) * float64(b.N) / 1e6
			bucketed, perTensor := total/parts["bucketed"].Seconds(), total/parts["per-tensor"].Seconds()
			b.ReportMetric(bucketed, "MB/s")
			b.ReportMetric(perTensor, "per-tensor-MB/s")
			b.ReportMetric(bucketed/perTensor, "ratio")
		})
	}
}

func allReduceBucketsBody(pg *ProcessGroup, bucket int64, n int, record func(string, time.Duration)) error {
	ts := make([]*Tensor, bucketsCount)
	for i := range ts {
		ts[i] = Ones(Float32, CPU, bucketsElems)
		defer ts[i].Free()
	}
	if err := pg.AllReduce(ts, DistSum, bucket); err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		if err := timed(record, "bucketed", func() error { return pg.AllReduce(ts, DistSum, bucket) }); err != nil {
			return err
		}
		// A bucket smaller than any tensor makes one all-reduce per tensor.
		if err := timed(record, "per-tensor", func() error { return pg.AllReduce(ts, DistSum, 1) }); err != nil {
			return err
		}
	}
	return nil
}

// BenchmarkGradSyncOverlap times one training step of an 8-layer 512-wide MLP (8 MiB of
// gradients, 1 MiB buckets) three ways in each round: backward alone, backward then a
// bucketed all-reduce of the gradients, and GradSync's all-reduce overlapping the
// backward pass. ratio is the after-backward step time over the overlapped one;
// comm-share is the all-reduce's share of the after-backward step.
func BenchmarkGradSyncOverlap(b *testing.B) {
	parts := runTwoRanks(b, "gradsync", 1<<20)
	per := func(p string) float64 { return parts[p].Seconds() / float64(b.N) * 1e3 }
	b.ReportMetric(per("compute"), "compute-ms")
	b.ReportMetric(per("after"), "after-ms")
	b.ReportMetric(per("overlap"), "overlap-ms")
	b.ReportMetric(per("after")/per("overlap"), "ratio")
	b.ReportMetric((per("after")-per("compute"))/per("after"), "comm-share")
}

func gradSyncOverlapBody(pg *ProcessGroup, bucket int64, n int, record func(string, time.Duration)) error {
	const layers, width, batch = 8, 512, 64
	g := NewGenerator(1)
	defer g.Close()
	var params []*Tensor
	for i := 0; i < layers; i++ {
		w := Randn(g, Float32, CPU, width, width).MulScalar(1 / 22.6) // keeps activations O(1)
		if err := w.SetRequiresGrad(true); err != nil {
			return err
		}
		params = append(params, w)
	}
	x := Randn(g, Float32, CPU, batch, width)
	sync, err := NewGradSync(pg, params, bucket)
	if err != nil {
		return err
	}
	defer sync.Close()
	backward := func() error {
		s := NewScope()
		defer s.Close()
		h := s.Ref(x)
		for _, w := range params {
			h = h.MatMul(w).Relu()
		}
		return h.Mean(false).Backward()
	}
	zero := func() error {
		for _, w := range params {
			if err := w.ZeroGrad(); err != nil {
				return err
			}
		}
		return nil
	}
	after := func() error {
		if err := backward(); err != nil {
			return err
		}
		grads := make([]*Tensor, len(params))
		for j, w := range params {
			var err error
			if grads[j], err = w.Grad(); err != nil {
				return err
			}
			defer grads[j].Free()
		}
		return pg.AllReduce(grads, DistAvg, bucket)
	}
	overlap := func() error {
		if err := sync.Prepare(); err != nil {
			return err
		}
		if err := backward(); err != nil {
			return err
		}
		return sync.Finish()
	}
	for i := 0; i <= n; i++ { // round 0 warms up
		rec := record
		if i == 0 {
			rec = func(string, time.Duration) {}
		}
		for _, step := range []struct {
			part string
			f    func() error
		}{{"compute", backward}, {"after", after}, {"overlap", overlap}} {
			if err := zero(); err != nil {
				return err
			}
			if err := timed(rec, step.part, step.f); err != nil {
				return err
			}
		}
	}
	return nil
}
