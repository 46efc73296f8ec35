package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/capfilt/capfilt/coordinator"
	"github.com/capfilt/capfilt/pipeline"
	"github.com/capfilt/capfilt/workers"
)

func newRunCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "run --input URLS --output URL --model PATH [--workers N] [settings]",
		Short: "Clean shards on this machine: an embedded NATS server, a submit and N workers in one process",
		Long: `The embedded default: starts nats-server in-process with JetStream on a temporary folder
(or --store-dir), submits the run, runs N workers, shows a progress bar and ends with the
manifest. No external service is needed. With --store-dir, running the same command again
resumes an interrupted run: finished shards are not redone.

Other worker processes can join through --nats-port (capfilt worker --nats
nats://127.0.0.1:PORT).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			run := a.v.GetString("run")
			if run == "" {
				run = defaultRunName(a.v.GetString("output"))
			}
			rs, err := a.runSettings(run)
			if err != nil {
				return err
			}
			qc, err := a.queueConfig()
			if err != nil {
				return err
			}
			opts, err := a.workerOptions()
			if err != nil {
				return err
			}
			n := a.v.GetInt("workers")
			if n < 1 {
				return usagef("workers %d: at least 1", n)
			}
			// The model is loaded before anything is published, so a bad one stops here.
			src := workers.NewBLIPSource(opts.device, opts.dtype)
			defer src.Close()
			if _, err := src.Labeler(ctx, rs); err != nil {
				return usagef("%v", err)
			}
			storeDir := a.v.GetString("store-dir")
			if storeDir == "" {
				if storeDir, err = os.MkdirTemp("", "capfilt-nats-"); err != nil {
					return err
				}
				defer os.RemoveAll(storeDir)
			}
			srv, err := pipeline.StartEmbeddedServer(pipeline.ServerConfig{StoreDir: storeDir, Port: a.v.GetInt("nats-port")})
			if err != nil {
				return usagef("%v", err)
			}
			defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
			a.log.Debug("embedded NATS server", "url", srv.ClientURL(), "store", storeDir)
			nc, js, err := pipeline.Connect(srv.ClientURL(), pipeline.ConnectOptions{Name: "capfilt run", Log: a.log})
			if err != nil {
				return err
			}
			defer nc.Close()
			q, err := pipeline.EnsureQueue(ctx, js, qc)
			if err != nil {
				return err
			}
			store := a.store()
			coord := coordinator.New(q, coordinator.Config{Store: store, Log: a.log, Version: capfiltVersion()})
			sum, err := coord.Submit(ctx, rs)
			if err != nil {
				return asUsage(err)
			}
			if sum.Resubmit {
				a.log.Info("resuming the run", "run", run, "shards", len(sum.Shards), "new_jobs", sum.Published)
			}
			metrics, serve, err := a.metricsServer()
			if err != nil {
				return err
			}
			if serve != nil {
				defer serve()
			}

			workCtx, stopWorkers := context.WithCancel(ctx)
			var wg sync.WaitGroup
			errs := make(chan error, n)
			for i := range n {
				cfg := opts.config
				cfg.ID, cfg.Models, cfg.Store, cfg.Metrics, cfg.Log = fmt.Sprintf("run-%d", i), src, store, metrics, a.quietLog(cmd)
				cfg.Version, cfg.Finisher = capfiltVersion(), coord
				w, err := workers.New(q, cfg)
				if err != nil {
					stopWorkers()
					return err
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := w.Run(workCtx); err != nil {
						errs <- err
					}
				}()
			}
			_, ferr := a.follow(ctx, coord, run, len(sum.Shards))
			stopWorkers()
			wg.Wait()
			close(errs)
			for err := range errs {
				return err
			}
			if ferr != nil {
				if ctx.Err() != nil {
					return fmt.Errorf("run %s interrupted; its unfinished shards were handed back (with --store-dir, run again to resume)", run)
				}
				return ferr
			}
			return a.finishRun(context.WithoutCancel(ctx), coord, run, rs.Output)
		},
	}
	f := cmd.Flags()
	f.String("run", "", "run name (default: the output folder's name)")
	f.Int("workers", 1, "workers in this process (on one GPU, or sharing the CPU)")
	f.String("store-dir", "", "JetStream folder of the embedded server (default: a temporary one, removed at the end)")
	f.Int("nats-port", 0, "port of the embedded NATS server (0: any free one)")
	f.String("metrics-addr", "", "serve Prometheus metrics on this address, e.g. :9090 (empty: off)")
	addModelFlags(cmd)
	addRunFlags(cmd)
	addWorkerFlags(cmd)
	addStoreFlags(cmd)
	return cmd
}

// quietLog is the workers' logger under the progress bar: their per-shard lines only when
// asked for with --log-level, warnings and errors always.
func (a *app) quietLog(cmd *cobra.Command) *slog.Logger {
	if a.source(cmd, "log-level") != "default" {
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
