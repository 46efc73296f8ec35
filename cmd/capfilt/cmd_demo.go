package main

import (
	"fmt"
	"log/slog"
	"os/signal"
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
	Quick   bool
	Workdir string
	Workers int
	Seeds   []uint
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
the same table. --quick is a smaller world and shorter runs (about 3 minutes on 2 cores) that
shows the pipeline working; its numbers are too noisy to show the effect. CapFilt runs with
2 workers unless --workers is given. A DIR holding an earlier demo is replaced.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := o.config(cmd)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			cfg.Version, cfg.Threads = capfiltVersion(), a.global.Threads
			cfg.Hooks = a.demoHooks()
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
	perInvocation(f, "quick", "workdir", "workers", "seeds")
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
	return cfg, nil
}

// demoHooks draw one progress bar per stage on stderr.
func (a *app) demoHooks() demo.Hooks {
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
	return demo.Hooks{
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
}
