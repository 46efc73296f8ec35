package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/capfilt/capfilt/localrun"
	"github.com/capfilt/capfilt/torch"
)

func newBenchCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{Use: "bench", Short: "Measure capfilt's own speed"}
	cmd.AddCommand(newBenchPipelineCommand(a), newBenchTrainCommand(a), newBenchModelCommand())
	return cmd
}

type benchPipelineCommand struct {
	Shards, PerShard, ImageSize, PrepareSize int
	Processes                                string
	ThreadsPerWorker                         int
	DecodeWorkers                            int
	Batch                                    batchSize
	Repeat                                   int

	cfg localrun.BenchConfig
}

func newBenchPipelineCommand(a *app) *cobra.Command {
	c := &benchPipelineCommand{}
	cmd := &cobra.Command{
		Use:   "pipeline [--bench-shards N] [--bench-per-shard M] [--processes 1,2,4]",
		Short: "Images/s of the worker pipeline: its overhead over raw decoding, and scaling over worker processes",
		Long: `On sample shards it writes to a temporary folder, with an embedded NATS server:

1. raw: reading and decoding the shards alone (the worker's reader and decode pool);
2. one worker with the model replaced by a pass-through: the same work plus NATS, batching
   and Parquet writing; its ratio to raw is the pipeline's overhead (target: at least 0.9);
3. the tiny random BLIP with 1, 2, 4, ... worker processes (capfilt worker, --threads-per-worker
   tensor threads each) on shards of images of its own 64 px: images/s until the CPUs
   saturate.`,
		Args:    cobra.NoArgs,
		PreRunE: func(*cobra.Command, []string) error { return c.resolve(a) },
		RunE:    func(cmd *cobra.Command, _ []string) error { return c.execute(a, cmd) },
	}
	f := cmd.Flags()
	f.IntVar(&c.Shards, "bench-shards", 8, "sample shards to write")
	f.IntVar(&c.PerShard, "bench-per-shard", 256, "samples per shard")
	f.IntVar(&c.ImageSize, "bench-image-size", 256, "width and height of the sample images")
	f.IntVar(&c.PrepareSize, "preprocess-size", 384, "side images are preprocessed to in the raw and pass-through runs (BLIP base: 384)")
	f.StringVar(&c.Processes, "processes", "1,2,4", "worker process counts for the tiny-model runs (empty: skip them)")
	f.IntVar(&c.ThreadsPerWorker, "threads-per-worker", 1, "tensor threads of each tiny-model worker process")
	addDecodeWorkersFlag(f, &c.DecodeWorkers)
	addBatchSizeFlag(f, &c.Batch)
	f.IntVar(&c.Repeat, "repeat", 3, "raw and pass-through runs to make; the best counts")
	perInvocation(f, "bench-shards", "bench-per-shard", "bench-image-size", "preprocess-size", "processes", "threads-per-worker", "repeat")
	return cmd
}

func (c *benchPipelineCommand) resolve(a *app) error {
	if c.Shards < 1 || c.PerShard < 1 || c.ImageSize < 8 || c.PrepareSize < 8 {
		return usagef("bench-shards %d, bench-per-shard %d, bench-image-size %d, preprocess-size %d: too small",
			c.Shards, c.PerShard, c.ImageSize, c.PrepareSize)
	}
	var procs []int
	for _, s := range strings.Split(c.Processes, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return a.bad("processes", quote(c.Processes), "want counts like 1,2,4")
		}
		procs = append(procs, n)
	}
	switch {
	case c.Repeat < 1:
		return a.bad("repeat", c.Repeat, "must be at least 1")
	case c.DecodeWorkers < 0:
		return a.bad("decode-workers", c.DecodeWorkers, "must be 0 (one per CPU) or more")
	case c.ThreadsPerWorker < 1:
		return a.bad("threads-per-worker", c.ThreadsPerWorker, "must be at least 1")
	}
	c.cfg = localrun.BenchConfig{Shards: c.Shards, PerShard: c.PerShard, ImageSize: c.ImageSize, PrepareSize: c.PrepareSize,
		Decoders: c.DecodeWorkers, BatchSize: c.Batch.or(8), Repeat: c.Repeat, Processes: procs, Version: capfiltVersion()}
	return nil
}

func (c *benchPipelineCommand) execute(a *app, cmd *cobra.Command) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	cfg := c.cfg
	cfg.WorkerProcess = func(i int, url string) *exec.Cmd {
		w := exec.CommandContext(cmd.Context(), exe, "worker", "--nats", url, "--threads", strconv.Itoa(c.ThreadsPerWorker),
			"--batch-size", strconv.Itoa(cfg.BatchSize), "--decode-workers", "1", "--drain-timeout", "0s", "--log-level", "warn",
			"--worker-id", fmt.Sprintf("bench-%d", i))
		w.Env = append(os.Environ(), testMainEnv+"=1") // lets a test binary act as capfilt
		w.Stderr = os.Stderr
		return w
	}
	cfg.OnResult = func(r localrun.BenchResult) {
		line := fmt.Sprintf("%-44s %6d images in %6.2fs = %7.1f img/s", r.Name, r.Images, r.Seconds, r.Rate())
		switch {
		case r.OfRaw > 0:
			line += fmt.Sprintf(" = %.2f of raw", r.OfRaw)
		case r.OfFirst > 0:
			line += fmt.Sprintf(" (x%.2f)", r.OfFirst)
		}
		a.printf("%s\n", line)
	}
	blas, _ := torch.BLASInfo()
	a.printf("capfilt %s bench pipeline: %d shards x %d samples of %dx%d px; %d CPUs, libtorch %s\n", capfiltVersion(), cfg.Shards,
		cfg.PerShard, cfg.ImageSize, cfg.ImageSize, runtime.NumCPU(), torch.Version())
	a.printf("blas: %s\n", blas)
	_, err = localrun.Bench(cmd.Context(), cfg)
	return err
}
