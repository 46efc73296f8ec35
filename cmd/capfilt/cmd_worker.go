package main

import (
	"errors"
	"fmt"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/capfilt/capfilt/blip"
	"github.com/capfilt/capfilt/coordinator"
	"github.com/capfilt/capfilt/modelstage"
	"github.com/capfilt/capfilt/torch"
	"github.com/capfilt/capfilt/workers"
)

type workerCommand struct {
	device deviceOptions
	worker workerOptions
	nats   natsOptions
	store  storeOptions
	ID     string

	dev torch.Device
	dt  torch.DType
	cfg workers.Config
}

func newWorkerCommand(a *app) *cobra.Command {
	c := &workerCommand{}
	cmd := &cobra.Command{
		Use:   "worker --nats URL [--device cpu|cuda:N] [--batch-size N|auto] [--decode-workers N] [--metrics-addr :9090]",
		Short: "Process jobs from NATS: caption, filter and write the cleaned Parquet of one shard at a time",
		Long: `Pulls jobs from the durable pull consumer, heartbeats while it works, runs the shard's
stages (read → decode → batch → caption → filter → write), publishes the outputs, records
the shard's state and acks. A failed shard is retried after its run's backoff; after the
run's max-deliver attempts it is dead with its error. A batch that runs out of GPU memory
is split, and the largest batch size that fit is kept; --batch-size auto finds it at the
first job.

SIGTERM or SIGINT: the worker stops pulling, lets its shard finish within --drain-timeout
or hands the job back to the queue, and exits 0.

--metrics-addr serves /metrics (Prometheus), /healthz (200 while the process serves) and
/readyz (200 once connected to NATS with a model loaded: at a run's first job).`,
		Args: cobra.NoArgs,
		PreRunE: func(cmd *cobra.Command, _ []string) (err error) {
			if c.dev, c.dt, err = c.device.resolve(a); err != nil {
				return err
			}
			c.cfg, err = c.worker.config(a)
			return err
		},
		RunE: func(cmd *cobra.Command, _ []string) error { return c.execute(a, cmd) },
	}
	f := cmd.Flags()
	c.device.AddFlags(f)
	c.worker.AddFlags(f)
	f.StringVar(&c.ID, "worker-id", "", "name of the worker in shard states and metrics (default: host-pid)")
	c.nats.AddFlags(f)
	c.store.AddFlags(f)
	return cmd
}

func (c *workerCommand) execute(a *app, cmd *cobra.Command) error {
	ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := blip.CheckDevice(c.dev, c.dt); err != nil {
		return usagef("%v", err)
	}
	site, err := c.worker.serveMetrics(a)
	if err != nil {
		return err
	}
	var metrics *workers.Metrics
	if site != nil {
		defer site.stop()
		metrics = site.metrics
	}
	nc, q, err := c.nats.openQueue(a, cmd, true)
	if err != nil {
		return err
	}
	defer nc.Close()
	src := modelstage.NewBLIPSource(c.dev, c.dt)
	src.Log = a.log
	defer src.Close()
	site.addCheck("nats", func() error {
		if !nc.IsConnected() {
			return fmt.Errorf("not connected (%s)", strings.ToLower(nc.Status().String()))
		}
		return nil
	})
	site.addCheck("model", func() error {
		if src.Loaded() == 0 {
			return errors.New("not loaded yet (a worker loads a run's models at its first job)")
		}
		return nil
	})
	store := c.store.open()
	cfg := c.cfg
	cfg.ID, cfg.Models, cfg.Store, cfg.Metrics, cfg.Log, cfg.Version = c.ID, src, store, metrics, a.log, capfiltVersion()
	cfg.Finisher = coordinator.New(q, coordinator.Config{Store: store, Log: a.log, Version: capfiltVersion()})
	w, err := workers.New(q, cfg)
	if err != nil {
		return err
	}
	return w.Run(ctx)
}
