package main

import (
	"errors"
	"strconv"
	"time"

	"github.com/spf13/pflag"

	"github.com/capfilt/capfilt/workers"
)

// workerOptions are what a worker process decides for itself (capfilt run's workers
// too): batching, decoding, draining, metrics.
type workerOptions struct {
	BatchSize     batchSize
	MaxBatchSize  int
	DecodeWorkers int
	DrainTimeout  time.Duration
	MetricsAddr   string
}

func (o *workerOptions) AddFlags(f *pflag.FlagSet) {
	addBatchSizeFlag(f, &o.BatchSize)
	f.IntVar(&o.MaxBatchSize, "max-batch-size", 512, "the largest batch --batch-size auto tries")
	addDecodeWorkersFlag(f, &o.DecodeWorkers)
	f.DurationVar(&o.DrainTimeout, "drain-timeout", workers.DefaultDrainTimeout, "on SIGTERM, how long the current shard may take to finish before its job is handed back (0: at once)")
	f.StringVar(&o.MetricsAddr, "metrics-addr", "", "serve Prometheus metrics on this address, e.g. :9090 (empty: off)")
}

func addBatchSizeFlag(f *pflag.FlagSet, dst *batchSize) {
	f.Var(dst, "batch-size", "images per model batch, or auto: workers find the largest that fits the GPU; 8 on the CPU and for caption")
}

func addDecodeWorkersFlag(f *pflag.FlagSet, dst *int) {
	f.IntVar(dst, "decode-workers", 0, "images decoded at once (0: one per CPU)")
}

// config is the workers.Config the settings make, with the binary's build (ID, models,
// store, log and version are the caller's).
func (o *workerOptions) config(a *app) (workers.Config, error) {
	var c workers.Config
	switch {
	case o.MaxBatchSize < 1:
		return c, a.bad("max-batch-size", o.MaxBatchSize, "must be at least 1")
	case o.DecodeWorkers < 0:
		return c, a.bad("decode-workers", o.DecodeWorkers, "must be 0 (one per CPU) or more")
	case o.DrainTimeout < 0:
		return c, a.bad("drain-timeout", o.DrainTimeout, "must be 0 (hand the job back at once) or more")
	}
	c.BatchSize, c.MaxBatchSize, c.DecodeWorkers, c.DrainTimeout = o.BatchSize.n, o.MaxBatchSize, o.DecodeWorkers, o.DrainTimeout
	c.Build = capfiltBuild()
	return c, nil
}

// batchSize is a model batch size, or auto (0).
type batchSize struct{ n int }

func (b *batchSize) String() string {
	if b.n == 0 {
		return "auto"
	}
	return strconv.Itoa(b.n)
}

func (b *batchSize) Set(s string) error {
	if s == "auto" {
		b.n = 0
		return nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return errors.New("want a positive number or auto")
	}
	b.n = n
	return nil
}

func (b *batchSize) Type() string { return "N|auto" }

// or is the size, or def when it is auto.
func (b batchSize) or(def int) int {
	if b.n == 0 {
		return def
	}
	return b.n
}

// metricsServer starts serving metrics when --metrics-addr is set (see serveMetrics);
// /readyz has no checks of its own.
func (o *workerOptions) metricsServer(a *app) (*workers.Metrics, func(), error) {
	site, err := o.serveMetrics(a)
	if err != nil || site == nil {
		return nil, nil, err
	}
	return site.metrics, site.stop, nil
}
