package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/capfilt/capfilt/coordinator"
	"github.com/capfilt/capfilt/demo"
	"github.com/capfilt/capfilt/pipeline"
	"github.com/capfilt/capfilt/trainer"
)

// demoOptions are one demo. None is read from the environment or capfilt.yaml: they
// describe this one invocation.
type demoOptions struct {
	Quick    bool
	Workdir  string
	Workers  int
	Seeds    []uint
	Parallel int
	// RunSeed is a child process's one seed, Bars whether it draws progress bars
	// (hidden: what the demo starts).
	RunSeed int64
	Bars    bool
}

// demoWorkers is how many CapFilt workers the demo runs when --workers is not given:
// several, as capfilt run is meant to be used, and as many as the 2-core machines the
// demo is sized for have cores.
const demoWorkers = 2

func newDemoCommand(a *app) *cobra.Command {
	var o demoOptions
	cmd := &cobra.Command{
		Use:   "demo [--quick] [--workdir DIR] [--workers N] [--seeds S,...]",
		Short: "BLIP's bootstrap on a synthetic web, measured: CapFilt, then Table 1 in miniature and an HTML report",
		Long: `Runs the whole of CapFilt on this machine, with no external service, on a synthetic web
where the truth is known (capfilt synth), once per seed:

  1. writes the world: a web set with 40% injected noise, an annotated set and a test set;
  2. pretrains a tiny BLIP (ITC + ITM + LM) on the annotated set and the noisy web;
  3. finetunes a captioner (LM) and a filter (ITC + ITM) from it on the annotated set;
  4. CapFilts the web set through the embedded pipeline, as capfilt run does (NATS,
     coordinator, workers): nucleus captions (top-p 0.9), the filter on web and synthetic
     captions, ITM threshold 0.5; again with the filter off, and with beam-search captions;
  5. pretrains fresh models from the same initial weights on the noisy web (the baseline),
     + synthetic captions (+C), + filtered web text (+F), + both filtered (+C+F), and +C+F
     with beam captions;
  6. finetunes each for captioning and retrieval on the annotated set and evaluates it on the
     test set: TR@1, IR@1 (ITC top-k re-ranked by ITM), BLEU-4, CIDEr-D.

It prints the paper's Table 1 in miniature, the filter's precision and recall on the injected
noise by kind, the captioner's attribute accuracy, the noise ratio the filter reports for
nucleus and beam captions, and the time of every stage, and writes DIR/report.html (loss
curves, score histograms, a gallery of captions kept and rejected), DIR/table.txt and
DIR/demo.json. Every number is measured in the run; the same seeds on the same machine give
the same table: each seed runs in a child process with one thread per op, --parallel of them
at once. The default (seeds 1 and 2) took 11 min 40 s on 2 cores; --quick, a smaller world
and shorter runs, under a minute, shows the pipeline working, but its numbers cannot show
the effect. CapFilt runs with 2 workers unless --workers is given. A DIR holding an
earlier demo is replaced.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := o.config(cmd)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			cfg.Version, cfg.Threads = capfiltVersion(), 1
			if o.RunSeed >= 0 {
				cfg.Hooks = a.demoHooks(o.Bars)
				_, err := demo.RunSeed(ctx, cfg, uint64(o.RunSeed))
				return err
			}
			cfg.Runner, cfg.Parallel = o.seedProcess(a), o.Parallel
			res, err := demo.Run(ctx, cfg)
			if err != nil {
				return err
			}
			a.printf("\n%s", res.Table.Text(res))
			a.printf("\nstage times (seconds):\n")
			for _, st := range res.Stages {
				a.printf("  seed %-3d %-30s %7.1f\n", st.Seed, st.Name, st.Seconds)
			}
			a.printf("  %-39s %7.1f\n", "in all", res.Seconds)
			a.printf("\nreport: %s (open it in a browser; it needs no server)\ntable:  %s\n", res.Report, res.TableFile)
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.Quick, "quick", false, "a smaller world and shorter runs: minutes, to see the pipeline work")
	f.StringVar(&o.Workdir, "workdir", "capfilt-demo", "folder for the worlds, models, CapFilt outputs and the report")
	f.IntVar(&o.Workers, "workers", 1, "workers in this process (on one GPU, or sharing the CPU)")
	f.UintSliceVar(&o.Seeds, "seeds", nil, "seeds to run, each a world, initial model, data order and samples of its own (default: the recipe's)")
	f.IntVar(&o.Parallel, "parallel", min(2, runtime.NumCPU()), "seeds run at once, each in a process of its own with one thread per op (the numbers do not depend on it)")
	f.Int64Var(&o.RunSeed, "run-seed", -1, "run this one seed of the demo in --workdir and write its seed.json (what the demo's child processes do)")
	f.BoolVar(&o.Bars, "bars", false, "with --run-seed: draw progress bars")
	_ = f.MarkHidden("run-seed")
	_ = f.MarkHidden("bars")
	perInvocation(f, "quick", "workdir", "workers", "seeds", "parallel", "run-seed", "bars")
	return cmd
}

func (o demoOptions) config(cmd *cobra.Command) (demo.Config, error) {
	r := demo.DefaultRecipe()
	if o.Quick {
		r = demo.QuickRecipe()
	}
	cfg := demo.Config{Workdir: o.Workdir, Recipe: r, Workers: demoWorkers, Seeds: r.Seeds}
	if cmd.Flags().Changed("workers") {
		if o.Workers < 1 {
			return cfg, usagef("workers (from --workers): %d: must be at least 1", o.Workers)
		}
		cfg.Workers = o.Workers
	}
	if len(o.Seeds) > 0 {
		cfg.Seeds = nil
		for _, s := range o.Seeds {
			cfg.Seeds = append(cfg.Seeds, uint64(s))
		}
	}
	if o.Workdir == "" {
		return cfg, usagef("no workdir given (--workdir)")
	}
	if o.Parallel < 1 {
		return cfg, usagef("parallel (from --parallel): %d: must be at least 1", o.Parallel)
	}
	return cfg, nil
}

// seedProcess runs each seed as `capfilt demo --run-seed S` in a child process with one
// thread per op (so that a seed's numbers are the same however many run at once), its
// stage lines passed through to stderr, and reads back the seed.json it writes.
func (o demoOptions) seedProcess(a *app) demo.SeedRunner {
	return func(ctx context.Context, cfg demo.Config, seed uint64) (*demo.SeedOutcome, error) {
		self, err := os.Executable()
		if err != nil {
			return nil, err
		}
		args := []string{"demo", "--run-seed", strconv.FormatUint(seed, 10), "--workdir", cfg.Workdir,
			"--workers", strconv.Itoa(cfg.Workers), "--threads", "1"}
		if o.Quick {
			args = append(args, "--quick")
		}
		if !a.quiet() {
			args = append(args, "--log-level", a.global.LogLevel)
		}
		if cfg.Parallel == 1 || len(cfg.Seeds) == 1 {
			args = append(args, "--bars")
		}
		c := exec.CommandContext(ctx, self, args...)
		c.Env = append(os.Environ(), testMainEnv+"=1") // lets a test binary act as capfilt
		c.Stdout, c.Stderr = a.stderr, a.stderr
		c.Cancel = func() error { return c.Process.Signal(syscall.SIGTERM) }
		c.WaitDelay = 10 * time.Second
		if err := c.Run(); err != nil {
			return nil, fmt.Errorf("%s: %w", strings.Join(c.Args, " "), err)
		}
		return demo.ReadSeedFile(cfg.Workdir, seed)
	}
}

// demoHooks write a line as each stage starts and ends on stderr, and with bars one
// progress bar per stage (a child process, whose lines interleave with its siblings',
// draws none).
func (a *app) demoHooks(bars bool) demo.Hooks {
	var bar *progressbar.ProgressBar
	var current string
	newBar := func(name string, total int, unit string) {
		if bar != nil && current == name {
			return
		}
		current = name
		bar = progressbar.NewOptions(total, progressbar.OptionSetWriter(a.stderr), progressbar.OptionSetDescription(name),
			progressbar.OptionShowCount(), progressbar.OptionSetItsString(unit), progressbar.OptionSetPredictTime(false),
			progressbar.OptionThrottle(200*time.Millisecond), progressbar.OptionSetWidth(20),
			progressbar.OptionOnCompletion(func() { fmt.Fprintln(a.stderr) }))
	}
	log := a.log
	if a.quiet() { // the bars stand alone unless --log-level asked for lines
		log = slog.New(slog.DiscardHandler)
	}
	h := demo.Hooks{
		Log: log,
		Stage: func(ev demo.StageEvent) {
			if !ev.Done {
				fmt.Fprintf(a.stderr, "[seed %d %2d/%d] %s\n", ev.Seed, ev.Index, ev.Of, ev.Name)
				bar, current = nil, ""
				return
			}
			if bar != nil {
				bar.Finish()
			}
			fmt.Fprintf(a.stderr, "[seed %d %2d/%d] %s: %.1fs\n", ev.Seed, ev.Index, ev.Of, ev.Name, ev.Took.Seconds())
		},
		Train: func(stage string, p trainer.Progress) {
			newBar(stage, p.Steps, "step")
			bar.Describe(fmt.Sprintf("%s loss %.3f", stage, p.Loss.Total))
			bar.Set(p.Step)
		},
		CapFilt: func(stage string, st *coordinator.RunStatus) {
			newBar(stage, st.Shards, "shard")
			bar.Describe(fmt.Sprintf("%s %.1f img/s", stage, st.ImagesPerSecond))
			bar.Set(st.ByState[pipeline.Done] + st.ByState[pipeline.Dead])
		},
	}
	if !bars {
		h.Train, h.CapFilt = nil, nil
	}
	return h
}
