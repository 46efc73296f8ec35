package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/capfilt/capfilt/coordinator"
	"github.com/capfilt/capfilt/localrun"
)

// runCommand is `capfilt run`: localrun with the settings of the command line.
type runCommand struct {
	run       runOptions
	device    deviceOptions
	worker    workerOptions
	store     storeOptions
	Workers   int
	StoreDir  string
	NATSPort  int
	Overwrite bool
	RetryDead bool

	cfg localrun.Config // resolved
}

func newRunCommand(a *app) *cobra.Command {
	c := &runCommand{}
	cmd := &cobra.Command{
		Use:   "run --input URLS --output URL --model PATH [--workers N] [settings]",
		Short: "Clean shards on this machine: an embedded NATS server, a submit and N workers in one process",
		Long: `The embedded default: starts nats-server in-process with JetStream on a temporary folder
(or --store-dir), submits the run, runs N workers, shows a progress bar and ends with the
manifest. No external service is needed. With --store-dir, running the same command again
resumes an interrupted run: finished shards are not redone; with --retry-dead added, the
shards it left dead are run again with fresh attempts. The output prefix belongs to the
run (OUTPUT/_capfilt_run.json): another run into it is refused unless --overwrite.

Other worker processes can join through --nats-port (capfilt worker --nats
nats://127.0.0.1:PORT).`,
		Args:    cobra.NoArgs,
		PreRunE: func(cmd *cobra.Command, _ []string) error { return c.resolve(a) },
		RunE:    func(cmd *cobra.Command, _ []string) error { return c.execute(a, cmd) },
	}
	f := cmd.Flags()
	c.run.AddFlags(f)
	c.device.AddFlags(f)
	c.worker.AddFlags(f)
	c.store.AddFlags(f)
	f.IntVar(&c.Workers, "workers", 1, "workers in this process (on one GPU, or sharing the CPU)")
	f.StringVar(&c.StoreDir, "store-dir", "", "JetStream folder of the embedded server (default: a temporary one, removed at the end)")
	f.IntVar(&c.NATSPort, "nats-port", 0, "port of the embedded NATS server (0: any free one)")
	addOverwriteFlag(f, &c.Overwrite)
	f.BoolVar(&c.RetryDead, "retry-dead", false, "run again the shards this run left dead (needs the run's --store-dir)")
	perInvocation(f, "retry-dead")
	return cmd
}

func (c *runCommand) resolve(a *app) error {
	run := c.run.Name
	if run == "" && c.run.Output != "" {
		run = defaultRunName(c.run.Output)
	}
	rs, qc, err := c.run.resolve(a, run)
	if err != nil {
		return err
	}
	dev, dt, err := c.device.resolve(a)
	if err != nil {
		return err
	}
	wc, err := c.worker.config(a)
	if err != nil {
		return err
	}
	switch {
	case c.Workers < 1:
		return a.bad("workers", c.Workers, "must be at least 1")
	case c.NATSPort < 0 || c.NATSPort > 65535:
		return a.bad("nats-port", c.NATSPort, "must be a port number (0: any free one)")
	case qc.Replicas > 1:
		return a.bad("queue-replicas", qc.Replicas, "the embedded NATS server is one server: 1")
	case c.RetryDead && c.StoreDir == "":
		return usagef("--retry-dead needs the run's state: give the --store-dir the run used")
	}
	c.cfg = localrun.Config{Settings: rs, Server: qc, Workers: c.Workers, Worker: wc, Device: dev, DType: dt,
		StoreDir: c.StoreDir, NATSPort: c.NATSPort, Overwrite: c.Overwrite, RetryDead: c.RetryDead, Version: capfiltVersion()}
	return nil
}

func (c *runCommand) execute(a *app, cmd *cobra.Command) error {
	ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	cfg := c.cfg
	if err := c.run.check(&cfg.Settings); err != nil {
		return err
	}
	metrics, serve, err := c.worker.metricsServer(a)
	if err != nil {
		return err
	}
	if serve != nil {
		defer serve()
	}
	cfg.Store, cfg.Metrics, cfg.Log, cfg.WorkerLog = c.store.open(), metrics, a.log, a.quietLog()
	run := cfg.Settings.Run
	bar := a.progress(run)
	cfg.OnStart = func(url string, sum *coordinator.SubmitSummary) {
		a.log.Debug("run submitted", "run", run, "nats", url, "shards", len(sum.Shards))
		bar.start(len(sum.Shards))
	}
	cfg.OnProgress = bar.update
	res, err := localrun.Run(ctx, cfg)
	switch {
	case errors.Is(err, localrun.ErrInterrupted):
		return fmt.Errorf("%w (with --store-dir, run again to resume)", err)
	case err != nil:
		return asUsage(err)
	}
	bar.finish()
	if len(res.Retried) > 0 {
		a.printf("re-ran %d dead shards\n", len(res.Retried))
	}
	return a.printManifest(res.Manifest, res.ManifestURL.String(), c.retryHint())
}

// retryHint says how to re-run the dead shards of a local run: its state is gone with a
// temporary store dir, and kept in --store-dir.
func (c *runCommand) retryHint() string {
	if c.StoreDir == "" {
		return "run the same command again to redo the run; with --store-dir DIR its state is kept, and --retry-dead then re-runs only the dead shards"
	}
	return fmt.Sprintf("run the same command with --retry-dead to re-run them from the state in --store-dir %s", c.StoreDir)
}

// quietLog is the workers' logger under the progress bar: their per-shard lines only when
// asked for with --log-level, warnings and errors always.
func (a *app) quietLog() *slog.Logger {
	if !a.quiet() {
		return a.log
	}
	return slog.New(levelFloor{a.log.Handler(), slog.LevelWarn})
}

// levelFloor drops records below a level.
type levelFloor struct {
	slog.Handler
	min slog.Level
}

func (h levelFloor) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h levelFloor) WithAttrs(as []slog.Attr) slog.Handler {
	return levelFloor{h.Handler.WithAttrs(as), h.min}
}
func (h levelFloor) WithGroup(g string) slog.Handler {
	return levelFloor{h.Handler.WithGroup(g), h.min}
}
