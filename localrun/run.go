// Package localrun runs the whole pipeline in one process, the embedded default: a
// nats-server with JetStream inside the process, a coordinator that submits the run,
// N workers with the BLIP model stage, and the run's manifest at the end. `capfilt run`
// and `capfilt bench pipeline` are thin commands over it; it prints nothing and reports
// progress through callbacks, so a demo or a test drives it the same way.
package localrun

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/capfilt/capfilt/coordinator"
	"github.com/capfilt/capfilt/modelstage"
	"github.com/capfilt/capfilt/pipeline"
	"github.com/capfilt/capfilt/shards"
	"github.com/capfilt/capfilt/torch"
	"github.com/capfilt/capfilt/workers"
)

// Config is one local run. Zero fields take the defaults noted.
type Config struct {
	// Settings is the run: its name, inputs, output, models, generation, rule, queue.
	Settings pipeline.RunSettings
	// Server is the embedded server's queue settings (the dedup window).
	Server pipeline.QueueConfig
	// Overwrite lets the run take over an output prefix another run claimed, or one
	// holding files capfilt did not write (coordinator.Overwrite).
	Overwrite bool
	// RetryDead re-runs the shards a run left dead, with fresh attempts: the run resumed
	// from StoreDir, which must hold its state.
	RetryDead bool
	// Workers is how many workers run in the process (default 1).
	Workers int
	// Worker is every worker's configuration: batch size, decoders, drain timeout. Its
	// ID, Models, Store, Finisher, Metrics and Log are set here.
	Worker workers.Config
	// Models opens the model stage (default: the BLIP models of the run's settings on
	// Device in DType, loaded once for every worker).
	Models workers.LabelerSource
	Device torch.Device
	DType  torch.DType
	// Store reads the inputs and writes the outputs (default: local disk and S3).
	Store shards.Store
	// StoreDir is the JetStream folder; a run started again on the same folder resumes
	// (default: a temporary one, removed at the end).
	StoreDir string
	// NATSPort is where the embedded server listens, so that worker processes elsewhere
	// can join (default: any free port).
	NATSPort int
	// Log gets the run's own lines; WorkerLog the workers' (default: Log).
	Log, WorkerLog *slog.Logger
	Metrics        *workers.Metrics
	Version        string

	// OnStart, when set, is told the embedded server's URL and what the submit did,
	// before any worker starts.
	OnStart func(natsURL string, sum *coordinator.SubmitSummary)
	// OnProgress, when set, is called with the run's status every ProgressEvery
	// (default 500ms) until the run is complete.
	OnProgress    func(*coordinator.RunStatus)
	ProgressEvery time.Duration
}

// Result is what a finished run left.
type Result struct {
	Submit *coordinator.SubmitSummary
	// Retried are the dead shards RetryDead re-enqueued.
	Retried     []pipeline.ShardRef
	Manifest    *coordinator.Manifest
	ManifestURL shards.URL
}

// ErrInterrupted means ctx ended before the run was complete: its unfinished shards were
// handed back, and running again on the same StoreDir resumes it.
var ErrInterrupted = errors.New("run interrupted")

// Run submits the run to an embedded server, works it off and writes its manifest. An
// error that means nothing was done (a model that does not load, a port in use, inputs
// that are not there) is a *coordinator.InvalidError.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg = withDefaults(cfg)
	rs := cfg.Settings
	if cfg.RetryDead && cfg.StoreDir == "" {
		return nil, &coordinator.InvalidError{Err: errors.New("retrying dead shards needs the run's state: give the store dir the run used")}
	}
	models := cfg.Models
	if models == nil {
		src := modelstage.NewBLIPSource(cfg.Device, cfg.DType)
		defer src.Close()
		models = src
	}
	// The model is loaded before anything is published, so a bad one stops here.
	if _, err := models.Labeler(ctx, rs); err != nil {
		return nil, &coordinator.InvalidError{Err: err}
	}
	storeDir := cfg.StoreDir
	if storeDir == "" {
		dir, err := os.MkdirTemp("", "capfilt-nats-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		storeDir = dir
	}
	srv, err := pipeline.StartEmbeddedServer(pipeline.ServerConfig{StoreDir: storeDir, Port: cfg.NATSPort})
	if err != nil {
		return nil, &coordinator.InvalidError{Err: err}
	}
	defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
	cfg.Log.Debug("embedded NATS server", "url", srv.ClientURL(), "store", storeDir)
	nc, js, err := pipeline.Connect(srv.ClientURL(), pipeline.ConnectOptions{Name: "capfilt run", Log: cfg.Log})
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	q, err := pipeline.EnsureQueue(ctx, js, cfg.Server)
	if err != nil {
		return nil, err
	}
	coord := coordinator.New(q, coordinator.Config{Store: cfg.Store, Log: cfg.Log, Version: cfg.Version})
	var opts []coordinator.SubmitOption
	if cfg.Overwrite {
		opts = append(opts, coordinator.Overwrite())
	}
	sum, err := coord.Submit(ctx, rs, opts...)
	if err != nil {
		return nil, err
	}
	if sum.Resubmit {
		cfg.Log.Info("resuming the run", "run", rs.Run, "shards", len(sum.Shards), "new_jobs", sum.Published)
	}
	var retried []pipeline.ShardRef
	if cfg.RetryDead {
		if retried, err = coord.Retry(ctx, coordinator.RetryRequest{Run: rs.Run, Dead: true}); err != nil {
			return nil, err
		}
		cfg.Log.Info("dead shards re-enqueued", "run", rs.Run, "shards", len(retried))
	}
	if cfg.OnStart != nil {
		cfg.OnStart(srv.ClientURL(), sum)
	}

	workCtx, stopWorkers := context.WithCancel(ctx)
	defer stopWorkers()
	var wg sync.WaitGroup
	errs := make(chan error, cfg.Workers)
	for i := range cfg.Workers {
		wc := cfg.Worker
		wc.ID, wc.Models, wc.Store, wc.Metrics, wc.Log = fmt.Sprintf("run-%d", i), models, cfg.Store, cfg.Metrics, cfg.WorkerLog
		wc.Version, wc.Finisher = cfg.Version, coord
		w, err := workers.New(q, wc)
		if err != nil {
			stopWorkers()
			wg.Wait()
			return nil, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := w.Run(workCtx); err != nil {
				errs <- err
			}
		}()
	}
	report := cfg.OnProgress
	if report == nil {
		report = func(*coordinator.RunStatus) {}
	}
	_, werr := coord.Watch(ctx, rs.Run, cfg.ProgressEvery, report)
	stopWorkers()
	wg.Wait()
	close(errs)
	for err := range errs {
		return nil, err
	}
	res := &Result{Submit: sum, Retried: retried}
	if werr != nil {
		if ctx.Err() != nil {
			return res, fmt.Errorf("%w: run %s; its unfinished shards were handed back", ErrInterrupted, rs.Run)
		}
		return res, werr
	}
	if res.Manifest, err = coord.WriteManifest(context.WithoutCancel(ctx), rs.Run); err != nil {
		return res, err
	}
	res.ManifestURL = res.Manifest.Settings.Output.Join(coordinator.ManifestName)
	return res, nil
}

func withDefaults(cfg Config) Config {
	if cfg.Workers < 1 {
		cfg.Workers = 1
	}
	if cfg.Store == nil {
		cfg.Store = shards.OpenStore(shards.StoreConfig{})
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.WorkerLog == nil {
		cfg.WorkerLog = cfg.Log
	}
	if cfg.ProgressEvery <= 0 {
		cfg.ProgressEvery = 500 * time.Millisecond
	}
	return cfg
}
