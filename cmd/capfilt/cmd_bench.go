package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/capfilt/capfilt/blip/tokenizer"

	"github.com/spf13/cobra"

	"github.com/capfilt/capfilt/blip"
	"github.com/capfilt/capfilt/captioner"
	"github.com/capfilt/capfilt/coordinator"
	"github.com/capfilt/capfilt/filter"
	"github.com/capfilt/capfilt/pipeline"
	"github.com/capfilt/capfilt/shards"
	"github.com/capfilt/capfilt/synth"
	"github.com/capfilt/capfilt/torch"
	"github.com/capfilt/capfilt/workers"
)

func newBenchCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{Use: "bench", Short: "Measure capfilt's own speed"}
	cmd.AddCommand(newBenchPipelineCommand(a), newBenchModelCommand())
	return cmd
}

func newBenchPipelineCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "pipeline [--shards N] [--per-shard M] [--processes 1,2,4]",
		Short: "Images/s of the worker pipeline: its overhead over raw decoding, and scaling over worker processes",
		Long: `On sample shards it writes to a temporary folder, with an embedded NATS server:

1. raw: reading and decoding the shards alone (the worker's reader and decode pool);
2. one worker with the model replaced by a pass-through: the same work plus NATS, batching
   and Parquet writing; its ratio to raw is the pipeline's overhead (target: at least 0.9);
3. the tiny random BLIP with 1, 2, 4, ... worker processes (capfilt worker, --threads-per-worker
   tensor threads each) on shards of images of its own 64 px: images/s until the CPUs
   saturate.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return a.benchPipeline(cmd.Context()) },
	}
	f := cmd.Flags()
	f.Int("shards", 8, "sample shards to write")
	f.Int("per-shard", 256, "samples per shard")
	f.Int("image-size", 256, "width and height of the sample images")
	f.Int("preprocess-size", 384, "side images are preprocessed to in the raw and pass-through runs (BLIP base: 384)")
	f.String("processes", "1,2,4", "worker process counts for the tiny-model runs (empty: skip them)")
	f.Int("threads-per-worker", 1, "tensor threads of each tiny-model worker process")
	f.Int("decode-workers", 0, "images decoded at once in the raw and pass-through runs (0: one per CPU)")
	f.String("batch-size", "8", "model batch size of the workers")
	f.Int("repeat", 3, "raw and pass-through runs to make; the best counts")
	return cmd
}

func (a *app) benchPipeline(ctx context.Context) error {
	nShards, per, side, prep := a.v.GetInt("shards"), a.v.GetInt("per-shard"), a.v.GetInt("image-size"), a.v.GetInt("preprocess-size")
	if nShards < 1 || per < 1 || side < 8 || prep < 8 {
		return usagef("shards %d, per-shard %d, image-size %d, preprocess-size %d: too small", nShards, per, side, prep)
	}
	var procs []int
	for _, s := range strings.Split(a.v.GetString("processes"), ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return usagef("processes %q: want counts like 1,2,4", a.v.GetString("processes"))
		}
		procs = append(procs, n)
	}
	batch := a.v.GetString("batch-size")
	bs, err := strconv.Atoi(batch)
	if err != nil || bs < 1 {
		return usagef("batch-size %q: want a positive number", batch)
	}
	decoders := a.v.GetInt("decode-workers")
	if decoders <= 0 {
		decoders = runtime.GOMAXPROCS(0)
	}
	dir, err := os.MkdirTemp("", "capfilt-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	in := filepath.Join(dir, "in")
	paths, err := synth.WriteSampleShards(in, nShards, synth.SampleOptions{PerShard: per, Width: side, Height: side, MismatchRate: 0.3, Seed: 1})
	if err != nil {
		return err
	}
	blas, _ := torch.BLASInfo()
	a.printf("capfilt %s bench pipeline: %d shards x %d samples of %dx%d px; %d CPUs, libtorch %s\n", capfiltVersion(), nShards, per,
		side, side, runtime.NumCPU(), torch.Version())
	a.printf("blas: %s\n", blas)
	store := shards.OpenStore(shards.StoreConfig{})

	repeat := a.v.GetInt("repeat")
	if repeat < 1 {
		return usagef("repeat %d: at least 1", repeat)
	}
	// 1. Raw reading and decoding, best of repeat.
	var raw int64
	var rawRate float64
	var rawSecs float64
	for range repeat + 1 { // the first pass warms the page cache and the heap
		began := time.Now()
		raw = 0
		for _, p := range paths {
			u, _ := shards.ParseURL(p)
			n, err := workers.ReadAndDecode(ctx, store, u, prep, decoders, workers.QueueDepth(bs, decoders))
			if err != nil {
				return err
			}
			raw += n
		}
		if secs := time.Since(began).Seconds(); rawRate == 0 || float64(raw)/secs > rawRate {
			rawRate, rawSecs = float64(raw)/secs, secs
		}
	}
	a.printf("%-44s %6d images in %6.2fs = %7.1f img/s\n", fmt.Sprintf("raw read + decode to %d px (%d decoders)", prep, decoders),
		raw, rawSecs, rawRate)

	srv, err := pipeline.StartEmbeddedServer(pipeline.ServerConfig{StoreDir: filepath.Join(dir, "nats")})
	if err != nil {
		return err
	}
	defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
	nc, js, err := pipeline.Connect(srv.ClientURL(), pipeline.ConnectOptions{Name: "capfilt bench"})
	if err != nil {
		return err
	}
	defer nc.Close()
	q, err := pipeline.EnsureQueue(ctx, js, pipeline.QueueConfig{})
	if err != nil {
		return err
	}
	coord := coordinator.New(q, coordinator.Config{Store: store, Version: capfiltVersion()})
	pattern := filepath.Join(in, "*.tar")

	// 2. One in-process worker with a pass-through model, best of repeat.
	w, err := workers.New(q, workers.Config{ID: "bench", Models: workers.PassThrough{Side: prep}, Store: store, BatchSize: bs,
		DecodeWorkers: decoders, FetchWait: 100 * time.Millisecond, Version: capfiltVersion()})
	if err != nil {
		return err
	}
	wctx, stopWorker := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { w.Run(wctx); close(done) }()
	var best, bestSecs float64
	var images int64
	for i := range repeat {
		run := fmt.Sprintf("passthrough-%d", i)
		n, secs, err := timeRun(ctx, coord, q, benchRun(run, pattern, filepath.Join(dir, run), pipeline.ModelSpec{Path: "pass-through"}))
		if err != nil {
			stopWorker()
			<-done
			return err
		}
		if rate := float64(n) / secs; rate > best {
			best, bestSecs, images = rate, secs, n
		}
	}
	stopWorker()
	<-done
	a.printf("%-44s %6d images in %6.2fs = %7.1f img/s = %.2f of raw\n", "one worker, pass-through model", images, bestSecs, best, best/rawRate)

	if len(procs) == 0 {
		return nil
	}
	// 3. The tiny model over worker processes. A warm-up run gives each process one small
	// shard first, so that loading the model is not timed.
	model := filepath.Join(dir, "tiny-blip")
	if err := writeRandomTiny(model); err != nil {
		return err
	}
	// Images of the model's own size: decoding then costs little next to the model.
	tinySide := blip.Tiny().Vision.ImageSize
	tinyIn, warm := filepath.Join(dir, "tiny-in"), filepath.Join(dir, "warm")
	if _, err := synth.WriteSampleShards(tinyIn, nShards, synth.SampleOptions{PerShard: per, Width: tinySide, Height: tinySide, MismatchRate: 0.3, Seed: 1}); err != nil {
		return err
	}
	if _, err := synth.WriteSampleShards(warm, slices.Max(procs), synth.SampleOptions{PerShard: 2, Width: tinySide, Height: tinySide, Seed: 9}); err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	var first float64
	for _, n := range procs {
		stop, err := startWorkerProcesses(ctx, exe, srv.ClientURL(), n, a.v.GetInt("threads-per-worker"), batch, q)
		if err != nil {
			return err
		}
		spec := pipeline.ModelSpec{Path: model}
		warmRun := benchRun(fmt.Sprintf("warm-%d", n), filepath.Join(warm, fmt.Sprintf("{00000..%05d}.tar", n-1)),
			filepath.Join(dir, fmt.Sprintf("out-warm-%d", n)), spec)
		if _, _, err := timeRun(ctx, coord, q, warmRun); err != nil {
			stop()
			return err
		}
		if err := waitIdle(ctx, q, n); err != nil {
			stop()
			return err
		}
		images, secs, err := timeRun(ctx, coord, q, benchRun(fmt.Sprintf("tiny-%d", n), filepath.Join(tinyIn, "*.tar"),
			filepath.Join(dir, fmt.Sprintf("out-tiny-%d", n)), spec))
		stop()
		if err != nil {
			return err
		}
		rate := float64(images) / secs
		if first == 0 {
			first = rate
		}
		a.printf("%-44s %6d images in %6.2fs = %7.1f img/s (x%.2f)\n", fmt.Sprintf("tiny BLIP (%d px), %d worker process(es)", tinySide, n), images, secs, rate, rate/first)
	}
	return nil
}

// benchRun is a run with CapFilt's defaults on model m.
func benchRun(run, pattern, out string, m pipeline.ModelSpec) pipeline.RunSettings {
	gen := captioner.NucleusDefaults()
	raw, _ := json.Marshal(gen)
	return pipeline.RunSettings{Run: run, Inputs: []string{pattern}, Output: out, Captioner: m, Filter: m, Generation: raw,
		Rule: workers.RuleSpec(filter.DefaultRule()), Version: capfiltVersion()}
}

// timeRun submits a run and waits for it; it returns the images read and the seconds from
// the submit to the last job acked. It watches the stream's job count, which costs the
// server next to nothing, rather than reading every shard's state.
func timeRun(ctx context.Context, coord *coordinator.Coordinator, q *pipeline.Queue, rs pipeline.RunSettings) (int64, float64, error) {
	began := time.Now()
	if _, err := coord.Submit(ctx, rs); err != nil {
		return 0, 0, err
	}
	for {
		n, err := q.PendingJobs(ctx, rs.Run)
		if err != nil {
			return 0, 0, err
		}
		if n == 0 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	secs := time.Since(began).Seconds()
	st, err := coord.Status(ctx, rs.Run) // states are recorded before their job is acked
	if err != nil {
		return 0, 0, err
	}
	if !st.Complete || st.ByState[pipeline.Dead] > 0 {
		return 0, 0, fmt.Errorf("bench run %s: %v, problems %+v", rs.Run, st.ByState, st.Problems)
	}
	return st.Images.Read, secs, nil
}

// startWorkerProcesses starts n `capfilt worker` processes and waits until each has asked
// for a job, so that their start-up is not timed.
func startWorkerProcesses(ctx context.Context, exe, url string, n, threads int, batch string, q *pipeline.Queue) (stop func(), err error) {
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
		c := exec.CommandContext(ctx, exe, "worker", "--nats", url, "--threads", strconv.Itoa(threads), "--batch-size", batch,
			"--decode-workers", "1", "--drain-timeout", "0s", "--log-level", "warn", "--worker-id", fmt.Sprintf("bench-%d", i))
		c.Env = append(os.Environ(), "CAPFILT_MAIN=1") // lets a test binary act as capfilt
		c.Stderr = os.Stderr
		if err := c.Start(); err != nil {
			stop()
			return nil, err
		}
		cmds = append(cmds, c)
	}
	if err := waitIdle(ctx, q, n); err != nil {
		stop()
		return nil, err
	}
	return stop, nil
}

// waitIdle waits until n workers wait for a job.
func waitIdle(ctx context.Context, q *pipeline.Queue, n int) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		info, err := q.Consumer.Info(ctx)
		if err == nil && info.NumWaiting >= n && info.NumAckPending == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d worker processes not waiting for jobs within 60s", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// writeRandomTiny writes a random blip.Tiny checkpoint with its vocabulary to dir.
func writeRandomTiny(dir string) error {
	tok, err := tokenizer.New(synth.TinyVocab(), tokenizer.BertUncased)
	if err != nil {
		return err
	}
	_, err = writeRandomModel(dir, blip.Tiny(), tok, 0)
	return err
}
