package workers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/capfilt/capfilt/pipeline"
	"github.com/capfilt/capfilt/pipeline/spec"
	"github.com/capfilt/capfilt/shards"
)

// RunFinisher writes a run's manifest once every shard is done or dead (the coordinator
// does; workers call it when a run has no job left in the stream).
type RunFinisher interface {
	FinishRun(ctx context.Context, run string) error
}

// Config configures a Worker. Zero fields take the defaults noted.
type Config struct {
	// ID names the worker in shard states and metrics (default host-pid).
	ID string
	// Models opens the model stage of each run.
	Models LabelerSource
	// Store reads input shards and writes outputs (default: local disk and S3).
	Store shards.Store
	// BatchSize is the model batch size; 0 finds the largest that fits the device
	// (FindBatchSize) when the model stage reports device memory, else uses 8.
	BatchSize int
	// MaxBatchSize bounds the automatic batch size (default 512).
	MaxBatchSize int
	// DecodeWorkers is how many images are decoded at once (default GOMAXPROCS).
	DecodeWorkers int
	// FetchWait is how long one pull for a job waits (default 5s).
	FetchWait time.Duration
	// DrainTimeout is how long a stopping worker lets its current shard finish before it
	// hands the job back (default 30s; 0 hands it back at once).
	DrainTimeout time.Duration
	// Finisher, when set, is asked to finish a run whose last job this worker settled.
	Finisher RunFinisher
	Metrics  *Metrics
	Log      *slog.Logger
	Version  string
	// Build is the binary's build the outputs record (empty: the one Go stamped in it).
	Build string
}

// DefaultDrainTimeout leaves a shard time to finish within Kubernetes' default grace.
const DefaultDrainTimeout = 25 * time.Second

// Worker pulls jobs and processes one shard at a time.
type Worker struct {
	q     *pipeline.Queue
	qc    pipeline.QueueConfig // as of the current job; only the Run goroutine touches it
	cfg   Config
	log   *slog.Logger
	sizer *BatchSizer

	mu       sync.Mutex
	runs     map[string]pipeline.RunSettings
	labelers map[Labeler]bool // labelers whose batch size has been settled
}

// New makes a worker on an opened queue.
func New(q *pipeline.Queue, cfg Config) (*Worker, error) {
	if cfg.Models == nil {
		return nil, errors.New("worker: no model stage (Config.Models)")
	}
	if cfg.ID == "" {
		host, _ := os.Hostname()
		cfg.ID = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	if cfg.Store == nil {
		cfg.Store = shards.OpenStore(shards.StoreConfig{})
	}
	if cfg.MaxBatchSize <= 0 {
		cfg.MaxBatchSize = 512
	}
	if cfg.DecodeWorkers <= 0 {
		cfg.DecodeWorkers = runtime.GOMAXPROCS(0)
	}
	if cfg.FetchWait <= 0 {
		cfg.FetchWait = 5 * time.Second
	}
	if cfg.DrainTimeout < 0 {
		cfg.DrainTimeout = 0
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	size := cfg.BatchSize
	if size <= 0 {
		size = 8
	}
	cfg.Metrics.AddWorker(cfg.ID, q)
	return &Worker{q: q, qc: q.Config(), cfg: cfg, log: cfg.Log.With("worker", cfg.ID), sizer: NewBatchSizer(size),
		runs: map[string]pipeline.RunSettings{}, labelers: map[Labeler]bool{}}, nil
}

// ID is the worker's name.
func (w *Worker) ID() string { return w.cfg.ID }

// BatchSize is the model batch size the worker uses now.
func (w *Worker) BatchSize() int { return w.sizer.Size() }

// Run pulls and processes jobs until ctx ends. Then it stops pulling, lets the current
// shard finish within DrainTimeout or hands its job back (a nak, so another worker takes
// it at once), and returns nil: stopping is not a failure.
func (w *Worker) Run(ctx context.Context) error {
	w.log.Info("worker started", "ack_wait", w.qc.AckWait)
	for ctx.Err() == nil {
		msg, err := w.next(ctx)
		if err != nil {
			if ctx.Err() == nil {
				w.log.Debug("no job fetched", "err", err)
				sleep(ctx, 500*time.Millisecond) // NATS is away; the client reconnects
			}
			continue
		}
		if msg == nil {
			continue
		}
		w.handle(ctx, msg)
	}
	w.log.Info("worker stopped")
	return nil
}

// next pulls one job, or nil when none came within FetchWait.
func (w *Worker) next(ctx context.Context) (*pipeline.Delivery, error) {
	return w.q.Fetch(ctx, w.cfg.FetchWait)
}

// handle runs one delivery of a job and settles it: ack when done, nak with backoff when
// it failed with attempts left, terminate when it is dead, nak at once when stopping.
func (w *Worker) handle(ctx context.Context, msg *pipeline.Delivery) {
	attempt := msg.Attempt()
	job, err := pipeline.DecodeJob(msg.Data())
	if err != nil {
		w.log.Error("malformed job terminated", "subject", msg.Subject(), "err", err)
		msg.Term(err.Error())
		return
	}
	log := w.log.With("run", job.Run, "shard", job.Shard.ID, "attempt", attempt)
	if qc, err := w.q.ReadConfig(ctx); err == nil {
		w.qc = qc
	} else {
		log.Debug("queue settings not refreshed", "err", err)
	}
	if attempt == 1 && job.Retry == 0 {
		w.cfg.Metrics.observeQueueWait(w.cfg.ID, time.Since(msg.Published()))
	}
	rs, err := w.runSettings(ctx, job.Run)
	if err != nil {
		if errors.Is(err, pipeline.ErrNotFound) {
			log.Error("job of an unknown run terminated")
			msg.Term("no settings for run " + job.Run)
			return
		}
		log.Warn("run settings unavailable; job handed back", "err", err)
		msg.NakAfter(spec.DefaultQueue().BackoffAfter(1))
		return
	}
	rq := rs.Queue
	cur, _, err := w.q.ShardState(ctx, job.Run, job.Shard.ID)
	if err != nil && !errors.Is(err, pipeline.ErrNotFound) {
		log.Warn("shard state unavailable; job handed back", "err", err)
		msg.NakAfter(rq.BackoffAfter(1))
		return
	}
	if err != nil {
		cur = pipeline.ShardState{Run: job.Run, Shard: job.Shard, SubmittedAt: msg.Published()}
	}
	switch {
	case cur.Retry > job.Retry:
		log.Info("job superseded by a retry; dropped", "retry", cur.Retry)
		msg.Term(fmt.Sprintf("superseded by retry %d", cur.Retry))
		return
	case cur.State == pipeline.Done && cur.Retry == job.Retry:
		log.Info("shard already done (its ack was lost); acking again")
		w.ack(ctx, msg, log)
		return
	case attempt > rq.MaxDeliver:
		// The worker of the last attempt died without a word (see EnsureQueue).
		cur.State, cur.Retry, cur.Attempts = pipeline.Dead, job.Retry, attempt-1
		cur.LastError = fmt.Sprintf("attempt %d: worker %s was lost (no heartbeat within %v); earlier: %s",
			attempt-1, orUnknown(cur.Worker), w.qc.AckWait, orUnknown(cur.LastError))
		cur.FinishedAt = time.Now().UTC()
		w.putState(ctx, cur, log)
		msg.Term(cur.LastError)
		log.Warn("shard dead", "err", cur.LastError)
		w.cfg.Metrics.shardFinished(w.cfg.ID, "dead", 0, 0)
		w.maybeFinish(ctx, job.Run, 1, log)
		return
	}
	w.process(ctx, msg, job, rs, cur, attempt, log)
}

func (w *Worker) process(ctx context.Context, msg *pipeline.Delivery, job pipeline.Job, rs pipeline.RunSettings,
	cur pipeline.ShardState, attempt int, log *slog.Logger) {
	st := cur
	st.Shard, st.Retry, st.State, st.Attempts, st.Worker = job.Shard, job.Retry, pipeline.Running, attempt, w.cfg.ID
	st.StartedAt, st.FinishedAt, st.Progress, st.Counts = time.Now().UTC(), time.Time{}, 0, pipeline.Counts{}
	st.BatchSize = w.sizer.Size()
	w.putState(ctx, st, log)
	log.Info("shard started", "input", job.Shard.URL)

	// The shard runs on its own context: stopping the worker gives it DrainTimeout first.
	jobCtx, cancelJob := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelJob()
	finished := make(chan struct{})
	var handedBack atomic.Bool
	go func() {
		select {
		case <-finished:
			return
		case <-ctx.Done():
		}
		log.Info("stopping: letting the shard finish", "within", w.cfg.DrainTimeout)
		select {
		case <-finished:
		case <-time.After(w.cfg.DrainTimeout):
			handedBack.Store(true)
			cancelJob()
		}
	}()
	var progress atomic.Int64
	stopBeat := w.heartbeat(msg, st, &progress, log)

	res, err := w.runShard(jobCtx, job, rs, func(n int64) { progress.Store(n) })
	close(finished)
	stopBeat()

	// Settling must outlive a stop signal: it is what makes the stop lose nothing.
	settle := context.WithoutCancel(ctx)
	st.FinishedAt = time.Now().UTC()
	st.Progress = 0
	st.BatchSize = w.sizer.Size()
	switch {
	case err == nil:
		st.State, st.Counts, st.LastError = pipeline.Done, res.Counts, ""
		st.Output, st.Stats, st.OOMSplits = res.Output.String(), res.Stats.String(), cur.OOMSplits+res.OOMSplits
		w.putState(settle, st, log)
		w.ack(settle, msg, log)
		log.Info("shard done", "read", res.Counts.Read, "accepted", res.Counts.Accepted, "rejected", res.Counts.Rejected,
			"skipped", res.Counts.Skipped, "seconds", res.Duration.Seconds(), "batch_size", res.BatchSize)
		w.cfg.Metrics.shardFinished(w.cfg.ID, "done", res.Counts.Read, res.Duration)
		w.maybeFinish(settle, job.Run, 0, log)
	case handedBack.Load() || (ctx.Err() != nil && errors.Is(err, context.Canceled)):
		st.State, st.Worker, st.StartedAt, st.FinishedAt = pipeline.Pending, "", time.Time{}, time.Time{}
		w.putState(settle, st, log)
		msg.Nak()
		log.Info("worker stopping: job handed back")
		w.cfg.Metrics.shardFinished(w.cfg.ID, "handed_back", 0, 0)
	case attempt >= rs.Queue.MaxDeliver:
		st.State, st.LastError = pipeline.Dead, fmt.Sprintf("attempt %d: %v", attempt, err)
		w.putState(settle, st, log)
		msg.Term(truncate(st.LastError, 1024))
		log.Error("shard dead: no attempt left", "err", err)
		w.cfg.Metrics.countError(w.cfg.ID, "shard_failed")
		w.cfg.Metrics.shardFinished(w.cfg.ID, "dead", 0, 0)
		w.maybeFinish(settle, job.Run, 1, log)
	default:
		delay := rs.Queue.BackoffAfter(attempt)
		st.State, st.LastError = pipeline.Failed, fmt.Sprintf("attempt %d: %v", attempt, err)
		w.putState(settle, st, log)
		msg.NakAfter(delay)
		log.Warn("shard failed; it will be retried", "err", err, "retry_in", delay)
		w.cfg.Metrics.countError(w.cfg.ID, "shard_failed")
		w.cfg.Metrics.shardFinished(w.cfg.ID, "failed", 0, 0)
	}
}

// runShard opens the run's model stage (settling its batch size the first time) and
// processes the shard.
func (w *Worker) runShard(ctx context.Context, job pipeline.Job, rs pipeline.RunSettings, progress func(int64)) (pipeline.ShardResult, error) {
	lab, err := w.cfg.Models.Labeler(ctx, rs)
	if err != nil {
		return pipeline.ShardResult{}, fmt.Errorf("run %s: model stage: %w", rs.Run, err)
	}
	if err := w.settleBatchSize(ctx, lab); err != nil {
		return pipeline.ShardResult{}, err
	}
	return ProcessShard(ctx, ShardTask{Job: job, Settings: rs, Labeler: lab, Store: w.cfg.Store, Sizer: w.sizer,
		DecodeWorkers: w.cfg.DecodeWorkers, Progress: progress, Metrics: w.cfg.Metrics, WorkerID: w.cfg.ID, Version: w.cfg.Version, Build: w.cfg.Build})
}

// settleBatchSize runs FindBatchSize once per model stage when the batch size is automatic
// and the model sits on a device with a memory limit.
func (w *Worker) settleBatchSize(ctx context.Context, lab Labeler) error {
	w.mu.Lock()
	done := w.labelers[lab]
	w.labelers[lab] = true
	w.mu.Unlock()
	if done || w.cfg.BatchSize > 0 {
		return nil
	}
	if dm, ok := lab.(DeviceMemory); !ok {
		return nil
	} else if _, onGPU := dm.MemoryStats(); !onGPU {
		return nil
	}
	began := time.Now()
	n, err := FindBatchSize(ctx, lab, 8, w.cfg.MaxBatchSize)
	if err != nil {
		return fmt.Errorf("find batch size: %w", err)
	}
	w.sizer.set(n)
	w.log.Info("batch size found", "batch_size", n, "seconds", time.Since(began).Seconds())
	return nil
}

func (w *Worker) runSettings(ctx context.Context, run string) (pipeline.RunSettings, error) {
	w.mu.Lock()
	rs, ok := w.runs[run]
	w.mu.Unlock()
	if ok {
		return rs, nil
	}
	rs, err := w.q.RunSettings(ctx, run)
	if err != nil {
		return rs, err
	}
	rs.Queue = rs.Queue.WithDefaults() // a run recorded before it had queue settings
	w.log.Info("run settings read", "run", run, "max_deliver", rs.Queue.MaxDeliver, "backoff", rs.Queue.Backoff.String(),
		"ack_wait", w.qc.AckWait)
	w.mu.Lock()
	w.runs[run] = rs // a run's settings never change once recorded
	w.mu.Unlock()
	return rs, nil
}

// heartbeat tells JetStream the job is in progress every AckWait/4, and records the
// shard's progress in its state, until the returned stop is called.
func (w *Worker) heartbeat(msg *pipeline.Delivery, st pipeline.ShardState, progress *atomic.Int64, log *slog.Logger) (stop func()) {
	every := max(w.qc.AckWait/4, 50*time.Millisecond)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		last := int64(-1)
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			if err := msg.InProgress(); err != nil {
				log.Debug("heartbeat not sent", "err", err)
			}
			if n := progress.Load(); n != last {
				last = n
				st.Progress = n
				st.BatchSize = w.sizer.Size()
				ctx, cancel := context.WithTimeout(context.Background(), every)
				if err := w.q.PutShardState(ctx, st); err != nil {
					log.Debug("progress not recorded", "err", err)
				}
				cancel()
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// putState records a state, retrying through a NATS outage for up to AckWait: past that
// the job is redelivered anyway and its next attempt records its own state.
func (w *Worker) putState(ctx context.Context, st pipeline.ShardState, log *slog.Logger) {
	deadline := time.Now().Add(w.qc.AckWait)
	for {
		err := w.q.PutShardState(ctx, st)
		if err == nil {
			return
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			log.Error("shard state not recorded", "state", st.State, "err", err)
			return
		}
		sleep(ctx, 250*time.Millisecond)
	}
}

// ack acknowledges a job and waits for JetStream to confirm, retrying through a NATS
// outage; an ack that never lands only means the job is redelivered and found done.
func (w *Worker) ack(ctx context.Context, msg *pipeline.Delivery, log *slog.Logger) {
	deadline := time.Now().Add(w.qc.AckWait)
	for {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := msg.Ack(actx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			log.Error("ack not confirmed; the job will be redelivered and found done", "err", err)
			return
		}
		sleep(ctx, 250*time.Millisecond)
	}
}

// maybeFinish asks the finisher to close a run when at most left of its jobs remain in
// the stream (1 after a terminate, which JetStream applies without confirming it).
func (w *Worker) maybeFinish(ctx context.Context, run string, left uint64, log *slog.Logger) {
	if w.cfg.Finisher == nil {
		return
	}
	n, err := w.q.PendingJobs(ctx, run)
	if err != nil || n > left {
		return
	}
	if err := w.cfg.Finisher.FinishRun(ctx, run); err != nil {
		log.Warn("run not finished", "err", err)
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
