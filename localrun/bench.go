package localrun

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"syscall"
	"time"

	"github.com/capfilt/capfilt/blip"
	"github.com/capfilt/capfilt/blip/tokenizer"
	"github.com/capfilt/capfilt/coordinator"
	"github.com/capfilt/capfilt/modelstage"
	"github.com/capfilt/capfilt/pipeline"
	"github.com/capfilt/capfilt/pipeline/spec"
	"github.com/capfilt/capfilt/shards"
	"github.com/capfilt/capfilt/synth"
	"github.com/capfilt/capfilt/workers"
)

// BenchConfig is one `capfilt bench pipeline`: sample shards written to a temporary
// folder, then three measurements (see Bench).
type BenchConfig struct {
	Shards, PerShard int // sample shards and samples in each
	ImageSize        int // side of the sample images
	PrepareSize      int // side images are prepared to in the raw and pass-through runs
	Decoders         int // images decoded at once in those runs (default GOMAXPROCS)
	BatchSize        int // model batch size of every worker
	Repeat           int // raw and pass-through runs to make; the best counts
	// Processes are the worker process counts of the tiny-model runs (none: skip them).
	Processes []int
	// WorkerProcess makes the command of the i-th worker process joining natsURL (the
	// capfilt binary's `worker`); Bench starts it and stops it with SIGTERM.
	WorkerProcess func(i int, natsURL string) *exec.Cmd
	Version       string
	// OnResult, when set, is told each measurement as it is made.
	OnResult func(BenchResult)
}

// BenchResult is one measurement: Images samples in Seconds.
type BenchResult struct {
	Name    string
	Images  int64
	Seconds float64
	// OfRaw is the rate's ratio to raw reading and decoding (pass-through run);
	// OfFirst its ratio to the first tiny-model run. Zero where it does not apply.
	OfRaw, OfFirst float64
}

// Rate is images per second.
func (r BenchResult) Rate() float64 { return float64(r.Images) / r.Seconds }

// Bench measures, on sample shards:
//
//  1. raw: reading and preparing the shards alone (the worker's reader and decode pool);
//  2. one worker with the model replaced by a pass-through: the same work plus NATS,
//     batching and Parquet writing; its ratio to raw is the pipeline's overhead;
//  3. the tiny random BLIP with 1, 2, 4, ... worker processes on shards of images of its
//     own size, after a warm-up run that loads the model in each.
func Bench(ctx context.Context, cfg BenchConfig) ([]BenchResult, error) {
	if cfg.Decoders <= 0 {
		cfg.Decoders = runtime.GOMAXPROCS(0)
	}
	cfg.Repeat = max(cfg.Repeat, 1)
	var out []BenchResult
	emit := func(r BenchResult) {
		out = append(out, r)
		if cfg.OnResult != nil {
			cfg.OnResult(r)
		}
	}
	dir, err := os.MkdirTemp("", "capfilt-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	in := filepath.Join(dir, "in")
	paths, err := synth.WriteSampleShards(in, cfg.Shards, synth.SampleOptions{PerShard: cfg.PerShard, Width: cfg.ImageSize,
		Height: cfg.ImageSize, MismatchRate: 0.3, Seed: 1})
	if err != nil {
		return nil, err
	}
	store := shards.OpenStore(shards.StoreConfig{})
	prep := modelstage.PassThrough{Side: cfg.PrepareSize}

	// 1. Raw reading and preparing, best of Repeat.
	raw := BenchResult{Name: fmt.Sprintf("raw read + decode to %d px (%d decoders)", cfg.PrepareSize, cfg.Decoders)}
	for range cfg.Repeat + 1 { // the first pass warms the page cache and the heap
		began := time.Now()
		var n int64
		for _, p := range paths {
			u, err := shards.ParseURL(p)
			if err != nil {
				return nil, err
			}
			k, err := workers.ReadAndPrepare(ctx, store, u, prep, cfg.Decoders, workers.QueueDepth(cfg.BatchSize, cfg.Decoders))
			if err != nil {
				return nil, err
			}
			n += k
		}
		r := BenchResult{Name: raw.Name, Images: n, Seconds: time.Since(began).Seconds()}
		if raw.Images == 0 || r.Rate() > raw.Rate() {
			raw = r
		}
	}
	emit(raw)

	srv, err := pipeline.StartEmbeddedServer(pipeline.ServerConfig{StoreDir: filepath.Join(dir, "nats")})
	if err != nil {
		return out, err
	}
	defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
	nc, js, err := pipeline.Connect(srv.ClientURL(), pipeline.ConnectOptions{Name: "capfilt bench"})
	if err != nil {
		return out, err
	}
	defer nc.Close()
	q, err := pipeline.EnsureQueue(ctx, js, pipeline.QueueConfig{})
	if err != nil {
		return out, err
	}
	coord := coordinator.New(q, coordinator.Config{Store: store, Version: cfg.Version})
	pattern := filepath.Join(in, "*.tar")
	ownConns := srv.NumClients() // the bench's own; the rest are worker processes

	// 2. One in-process worker with a pass-through model, best of Repeat.
	w, err := workers.New(q, workers.Config{ID: "bench", Models: prep, Store: store, BatchSize: cfg.BatchSize,
		DecodeWorkers: cfg.Decoders, FetchWait: 100 * time.Millisecond, Version: cfg.Version})
	if err != nil {
		return out, err
	}
	wctx, stopWorker := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { w.Run(wctx); close(done) }()
	pass := BenchResult{Name: "one worker, pass-through model"}
	for i := range cfg.Repeat {
		run := fmt.Sprintf("passthrough-%d", i)
		r, err := timeRun(ctx, coord, q, benchRun(run, pattern, filepath.Join(dir, run), pipeline.ModelSpec{Path: "pass-through"}, cfg.Version))
		if err != nil {
			stopWorker()
			<-done
			return out, err
		}
		if pass.Images == 0 || r.Rate() > pass.Rate() {
			pass.Images, pass.Seconds = r.Images, r.Seconds
		}
	}
	stopWorker()
	<-done
	pass.OfRaw = pass.Rate() / raw.Rate()
	emit(pass)
	if len(cfg.Processes) == 0 {
		return out, nil
	}

	// 3. The tiny model over worker processes, on images of its own side: decoding then
	// costs little next to the model.
	model := filepath.Join(dir, "tiny-blip")
	tok, err := tokenizer.New(synth.TinyVocab(), tokenizer.BertUncased)
	if err != nil {
		return out, err
	}
	if _, err := modelstage.WriteRandomModel(model, blip.Tiny(), tok, 0); err != nil {
		return out, err
	}
	side := blip.Tiny().Vision.ImageSize
	tinyIn, warm := filepath.Join(dir, "tiny-in"), filepath.Join(dir, "warm")
	if _, err := synth.WriteSampleShards(tinyIn, cfg.Shards, synth.SampleOptions{PerShard: cfg.PerShard, Width: side, Height: side, MismatchRate: 0.3, Seed: 1}); err != nil {
		return out, err
	}
	if _, err := synth.WriteSampleShards(warm, slices.Max(cfg.Processes), synth.SampleOptions{PerShard: 2, Width: side, Height: side, Seed: 9}); err != nil {
		return out, err
	}
	var first float64
	for _, n := range cfg.Processes {
		stop, err := startWorkerProcesses(ctx, cfg.WorkerProcess, srv.ClientURL(), n, func() int { return srv.NumClients() - ownConns })
		if err != nil {
			return out, err
		}
		m := pipeline.ModelSpec{Path: model}
		warmRun := benchRun(fmt.Sprintf("warm-%d", n), filepath.Join(warm, fmt.Sprintf("{00000..%05d}.tar", n-1)),
			filepath.Join(dir, fmt.Sprintf("out-warm-%d", n)), m, cfg.Version)
		if _, err := timeRun(ctx, coord, q, warmRun); err != nil {
			stop()
			return out, err
		}
		r, err := timeRun(ctx, coord, q, benchRun(fmt.Sprintf("tiny-%d", n), filepath.Join(tinyIn, "*.tar"),
			filepath.Join(dir, fmt.Sprintf("out-tiny-%d", n)), m, cfg.Version))
		stop()
		if err != nil {
			return out, err
		}
		if first == 0 {
			first = r.Rate()
		}
		r.Name, r.OfFirst = fmt.Sprintf("tiny BLIP (%d px), %d worker process(es)", side, n), r.Rate()/first
		emit(r)
	}
	return out, nil
}

// benchRun is a run with CapFilt's defaults on model m.
func benchRun(run, pattern, out string, m pipeline.ModelSpec, version string) pipeline.RunSettings {
	o, _ := shards.ParseURL(out)
	return pipeline.RunSettings{Run: run, Inputs: []string{pattern}, Output: o, Captioner: m, Filter: m,
		Generation: spec.NucleusDefaults(), Rule: spec.DefaultRule(), Queue: spec.DefaultQueue(), Version: version}
}

// timeRun submits a run and waits for it; it returns the images read and the seconds from
// the submit to the last job acked. It watches the stream's job count, which costs the
// server next to nothing, rather than reading every shard's state.
func timeRun(ctx context.Context, coord *coordinator.Coordinator, q *pipeline.Queue, rs pipeline.RunSettings) (BenchResult, error) {
	began := time.Now()
	if _, err := coord.Submit(ctx, rs); err != nil {
		return BenchResult{}, err
	}
	for {
		n, err := q.PendingJobs(ctx, rs.Run)
		if err != nil {
			return BenchResult{}, err
		}
		if n == 0 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	secs := time.Since(began).Seconds()
	st, err := coord.Status(ctx, rs.Run) // states are recorded before their job is acked
	if err != nil {
		return BenchResult{}, err
	}
	if !st.Complete || st.ByState[pipeline.Dead] > 0 {
		return BenchResult{}, fmt.Errorf("bench run %s: %v, problems %+v", rs.Run, st.ByState, st.Problems)
	}
	return BenchResult{Images: st.Images.Read, Seconds: secs}, nil
}

// startWorkerProcesses starts n worker processes and waits until each has connected to
// the server (workers counts the worker processes' connections), so that their start-up
// is not timed; the warm-up run that follows loads their models.
func startWorkerProcesses(ctx context.Context, mk func(int, string) *exec.Cmd, url string, n int, workers func() int) (stop func(), err error) {
	if mk == nil {
		return nil, errors.New("bench: no worker process command (BenchConfig.WorkerProcess)")
	}
	var cmds []*exec.Cmd
	stop = func() {
		for _, c := range cmds {
			c.Process.Signal(syscall.SIGTERM)
		}
		for _, c := range cmds {
			c.Wait()
		}
	}
	for i := range n {
		c := mk(i, url)
		if err := c.Start(); err != nil {
			stop()
			return nil, err
		}
		cmds = append(cmds, c)
	}
	if err := waitConnected(ctx, workers, n); err != nil {
		stop()
		return nil, err
	}
	return stop, nil
}

// waitConnected waits until exactly n worker processes are connected: the ones of an
// earlier measurement may take a moment to be gone.
func waitConnected(ctx context.Context, workers func() int, n int) error {
	deadline := time.Now().Add(60 * time.Second)
	for workers() != n {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%d worker processes connected after 60s, want %d", workers(), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}
