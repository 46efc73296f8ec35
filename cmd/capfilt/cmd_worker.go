package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/capfilt/capfilt/coordinator"
	"github.com/capfilt/capfilt/torch"
	"github.com/capfilt/capfilt/workers"
)

func newWorkerCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "worker --nats URL [--device cpu|cuda:N] [--batch-size N|auto] [--decode-workers N] [--metrics-addr :9090]",
		Short: "Process jobs from NATS: caption, filter and write the cleaned Parquet of one shard at a time",
		Long: `Pulls jobs from the durable pull consumer, heartbeats while it works, runs the shard's
stages (read → decode → batch → caption → filter → write), publishes the outputs, records
the shard's state and acks. A failed shard is retried after a backoff; after max-deliver
attempts it is dead with its error. A batch that runs out of GPU memory is split, and the
largest batch size that fit is kept; --batch-size auto finds it at the first job.

SIGTERM or SIGINT: the worker stops pulling, lets its shard finish within --drain-timeout
or hands the job back to the queue, and exits 0.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			opts, err := a.workerOptions()
			if err != nil {
				return err
			}
			metrics, serve, err := a.metricsServer()
			if err != nil {
				return err
			}
			nc, q, err := a.connectQueue(cmd, true)
			if err != nil {
				return err
			}
			defer nc.Close()
			src := workers.NewBLIPSource(opts.device, opts.dtype)
			defer src.Close()
			store := a.store()
			cfg := opts.config
			cfg.ID, cfg.Models, cfg.Store, cfg.Metrics, cfg.Log, cfg.Version = a.v.GetString("worker-id"), src, store, metrics, a.log, capfiltVersion()
			cfg.Finisher = coordinator.New(q, coordinator.Config{Store: store, Log: a.log, Version: capfiltVersion()})
			w, err := workers.New(q, cfg)
			if err != nil {
				return err
			}
			if serve != nil {
				defer serve()
			}
			return w.Run(ctx)
		},
	}
	addWorkerFlags(cmd)
	f := cmd.Flags()
	f.String("worker-id", "", "name of the worker in shard states and metrics (default: host-pid)")
	f.String("metrics-addr", "", "serve Prometheus metrics on this address, e.g. :9090 (empty: off)")
	addNATSFlags(cmd)
	addStoreFlags(cmd)
	return cmd
}

// addWorkerFlags adds what a worker process decides for itself (capfilt run has them too).
func addWorkerFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	if f.Lookup("device") == nil {
		f.String("device", "cpu", "device: cpu, cuda or cuda:N")
		f.String("dtype", "float32", "weights dtype: float32, or bfloat16/float16 on CUDA")
	}
	f.String("batch-size", "auto", "images per model batch, or auto: the largest that fits the GPU (8 on the CPU)")
	f.Int("max-batch-size", 512, "the largest batch --batch-size auto tries")
	f.Int("decode-workers", 0, "images decoded at once (0: one per CPU)")
	f.Duration("drain-timeout", workers.DefaultDrainTimeout, "on SIGTERM, how long the current shard may take to finish before its job is handed back")
}

type workerOptions struct {
	device torch.Device
	dtype  torch.DType
	config workers.Config
}

func (a *app) workerOptions() (workerOptions, error) {
	var o workerOptions
	var err error
	if o.device, err = torch.ParseDevice(a.v.GetString("device")); err != nil {
		return o, usagef("%v", err)
	}
	if o.device.CUDA && (!torch.CUDAAvailable() || o.device.Index >= torch.CUDADeviceCount()) {
		return o, usagef("device %v is not available (capfilt version lists the devices)", o.device)
	}
	if o.dtype, err = torch.ParseDType(a.v.GetString("dtype")); err != nil {
		return o, usagef("%v", err)
	}
	if bs := a.v.GetString("batch-size"); bs != "auto" {
		n, err := strconv.Atoi(bs)
		if err != nil || n < 1 {
			return o, usagef("batch-size %q: want a positive number or auto", bs)
		}
		o.config.BatchSize = n
	}
	o.config.MaxBatchSize = a.v.GetInt("max-batch-size")
	if o.config.MaxBatchSize < 1 {
		return o, usagef("max-batch-size %d: at least 1", o.config.MaxBatchSize)
	}
	if o.config.DecodeWorkers = a.v.GetInt("decode-workers"); o.config.DecodeWorkers < 0 {
		return o, usagef("decode-workers %d: 0 (one per CPU) or more", o.config.DecodeWorkers)
	}
	if o.config.DrainTimeout = a.v.GetDuration("drain-timeout"); o.config.DrainTimeout < 0 {
		return o, usagef("drain-timeout %v: 0 or more", o.config.DrainTimeout)
	}
	return o, nil
}

// metricsServer starts serving Prometheus metrics when --metrics-addr is set; the
// address is taken at once, so a port in use is a usage error.
func (a *app) metricsServer() (*workers.Metrics, func(), error) {
	addr := a.v.GetString("metrics-addr")
	if addr == "" {
		return nil, nil, nil
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m, err := workers.NewMetrics(reg)
	if err != nil {
		return nil, nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, usagef("metrics-addr %s: %v", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("metrics server", "err", err)
		}
	}()
	a.log.Info("serving metrics", "addr", ln.Addr().String())
	return m, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}, nil
}
