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
	cfg   Config
	log   *slog.Logger
	sizer *BatchSizer

	mu       sync.Mutex
	runs     map[string]pipeline.RunSettings
	labelers map[Labeler]bool // labelers whose batch size has been settled
	stopping atomic.Bool      // Run's context has ended
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
	return &Worker{q: q, cfg: cfg, log: cfg.Log.With("worker", cfg.ID), sizer: NewBatchSizer(size),
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
	w.log.Info("worker started")
	stop := context.AfterFunc(ctx, func() { w.stopping.Store(true) })
	defer stop()
	for ctx.Err() == nil {
		msg, err := w.q.Fetch(ctx, w.cfg.FetchWait)
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

// unavailableWait is how long a job is handed back for, and the worker waits, when NATS
// did not answer for the job's settings or state: no attempt has begun, none is used.
const unavailableWait = time.Second

// handle runs one delivery of a job and settles it: ack when done, nak with backoff when
// it failed with attempts left, terminate when it is dead, nak at once when stopping.
func (w *Worker) handle(ctx context.Context, msg *pipeline.Delivery) {
	settle := context.WithoutCancel(ctx)
	job, err := pipeline.DecodeJob(msg.Data())
	if err != nil {
		w.log.Error("malformed job terminated", "subject", msg.Subject(), "err", err)
		w.term(settle, msg, err.Error(), w.log)
		return
	}
	log := w.log.With("run", job.Run, "shard", job.Shard.ID, "delivery", msg.Attempt())
	if msg.Attempt() == 1 && job.Retry == 0 {
		w.cfg.Metrics.observeQueueWait(w.cfg.ID, time.Since(msg.Published()))
	}
	rs, err := w.runSettings(ctx, job.Run)
	if err != nil {
		if errors.Is(err, pipeline.ErrNotFound) {
			log.Error("job of an unknown run terminated")
			w.term(settle, msg, "no settings for run "+job.Run, log)
			return
		}
		log.Warn("run settings unavailable; job handed back", "err", err)
		msg.NakAfter(unavailableWait)
		sleep(ctx, unavailableWait)
		return
	}
	rq := rs.Queue
	cur, _, err := w.q.ShardState(ctx, job.Run, job.Shard.ID)
	if err != nil && !errors.Is(err, pipeline.ErrNotFound) {
		log.Warn("shard state unavailable; job handed back", "err", err)
		msg.NakAfter(unavailableWait)
		sleep(ctx, unavailableWait)
		return
	}
	if err != nil {
		cur = pipeline.ShardState{Run: job.Run, Shard: job.Shard, State: pipeline.Pending, SubmittedAt: msg.Published()}
	}
	if cur.Retry < job.Retry { // the retry's pending state was not stored
		cur.Retry, cur.State, cur.Attempts, cur.Outages, cur.Worker = job.Retry, pipeline.Pending, 0, 0, ""
	}
	switch {
	case cur.Retry > job.Retry:
		log.Info("job superseded by a retry; dropped", "retry", cur.Retry)
		w.term(settle, msg, fmt.Sprintf("superseded by retry %d", cur.Retry), log)
		return
	case cur.State == pipeline.Done:
		log.Info("shard already done (its ack was lost); acking again")
		w.ack(settle, msg, rq.AckWait, log)
		return
	case cur.State == pipeline.Dead:
		log.Info("shard already dead (its terminate was lost); terminating again")
		w.term(settle, msg, cur.LastError, log)
		w.maybeFinish(settle, job.Run, log)
		return
	case cur.State == pipeline.Running && cur.Attempts >= rq.MaxDeliver:
		// The worker of the last attempt died without a word: nobody else will settle it.
		cur.State = pipeline.Dead
		cur.LastError = fmt.Sprintf("attempt %d: worker %s was lost (no heartbeat within %v); earlier: %s",
			cur.Attempts, orUnknown(cur.Worker), rq.AckWait, orUnknown(cur.LastError))
		cur.FinishedAt = time.Now().UTC()
		w.putState(settle, cur, rq.AckWait, log)
		w.term(settle, msg, cur.LastError, log)
		log.Warn("shard dead", "err", cur.LastError)
		w.cfg.Metrics.shardFinished(w.cfg.ID, "dead", 0, 0)
		w.maybeFinish(settle, job.Run, log)
		return
	case cur.State == pipeline.Running:
		cur.LastError = fmt.Sprintf("attempt %d: worker %s was lost (no heartbeat within %v)", cur.Attempts, orUnknown(cur.Worker), rq.AckWait)
	}
	w.process(ctx, msg, job, rs, cur, cur.Attempts+1, log)
}

func (w *Worker) process(ctx context.Context, msg *pipeline.Delivery, job pipeline.Job, rs pipeline.RunSettings,
	cur pipeline.ShardState, attempt int, log *slog.Logger) {
	rq := rs.Queue
	log = log.With("attempt", attempt)
	st := cur
	st.Shard, st.Retry, st.State, st.Attempts, st.Worker = job.Shard, job.Retry, pipeline.Running, attempt, w.cfg.ID
	st.StartedAt, st.FinishedAt, st.Progress, st.Counts, st.Damage = time.Now().UTC(), time.Time{}, 0, pipeline.Counts{}, nil
	st.BatchSize = w.sizer.Size()
	w.putState(ctx, st, rq.AckWait, log)
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
	beat := w.heartbeat(msg, st, rq.AckWait, log)

	var res pipeline.ShardResult
	var err error
	for {
		res, err = w.runShard(jobCtx, job, rs, beat.progress)
		if err == nil || jobCtx.Err() != nil || classify(err) != failureOutage {
			break
		}
		// A store outage is nobody's fault: the shard runs again once the store answers,
		// in this delivery, without using up an attempt.
		log.Warn("shard interrupted by the store", "err", err)
		if !w.waitForStore(jobCtx, job, rs, log) {
			break // the store answered at once (no outage; the attempt counts) or we stop
		}
		st.Outages++
		st.LastError = fmt.Sprintf("attempt %d: store unavailable, run again once it answered: %v", attempt, err)
		beat.set(st)
	}
	close(finished)
	beat.stop()

	// Settling must outlive a stop signal: it is what makes the stop lose nothing.
	settle := context.WithoutCancel(ctx)
	st.FinishedAt = time.Now().UTC()
	st.Progress = 0
	st.BatchSize = w.sizer.Size()
	switch {
	case err == nil:
		st.State, st.Counts, st.LastError = pipeline.Done, res.Counts, ""
		st.Output, st.Stats, st.OOMSplits = res.Output.String(), res.Stats.String(), cur.OOMSplits+res.OOMSplits
		if res.Detail != nil {
			st.Damage = res.Detail.Damage
		}
		w.putState(settle, st, rq.AckWait, log)
		w.ack(settle, msg, rq.AckWait, log)
		if st.Damage != nil {
			log.Warn("shard done with damage: the samples before it were processed", "reason", st.Damage.Reason,
				"truncated_at", st.Damage.TruncatedAt, "member", st.Damage.Member, "after_member", st.Damage.After)
		}
		log.Info("shard done", "read", res.Counts.Read, "accepted", res.Counts.Accepted, "rejected", res.Counts.Rejected,
			"skipped", res.Counts.Skipped, "seconds", res.Duration.Seconds(), "batch_size", res.BatchSize)
		w.cfg.Metrics.shardFinished(w.cfg.ID, "done", res.Counts.Read, res.Duration)
		w.maybeFinish(settle, job.Run, log)
	case handedBack.Load() || (ctx.Err() != nil && errors.Is(err, context.Canceled)):
		// The attempt did not finish through no fault of the shard: it does not count.
		st.State, st.Attempts, st.Worker, st.StartedAt, st.FinishedAt = pipeline.Pending, attempt-1, "", time.Time{}, time.Time{}
		w.putState(settle, st, rq.AckWait, log)
		msg.Nak()
		log.Info("worker stopping: job handed back")
		w.cfg.Metrics.shardFinished(w.cfg.ID, "handed_back", 0, 0)
	case classify(err) == failureShard || attempt >= rq.MaxDeliver:
		why := "no attempt left"
		if classify(err) == failureShard {
			why = "the shard cannot be processed; not retried"
		}
		st.State, st.LastError = pipeline.Dead, fmt.Sprintf("attempt %d: %v (%s)", attempt, err, why)
		w.putState(settle, st, rq.AckWait, log)
		w.term(settle, msg, truncate(st.LastError, 1024), log)
		log.Error("shard dead: "+why, "err", err)
		w.cfg.Metrics.countError(w.cfg.ID, "shard_failed")
		w.cfg.Metrics.shardFinished(w.cfg.ID, "dead", 0, 0)
		w.maybeFinish(settle, job.Run, log)
	default:
		delay := rq.BackoffAfter(attempt)
		st.State, st.LastError = pipeline.Failed, fmt.Sprintf("attempt %d: %v", attempt, err)
		w.putState(settle, st, rq.AckWait, log)
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
	w.log.Info("run settings read", "run", run, "ack_wait", rs.Queue.AckWait, "max_deliver", rs.Queue.MaxDeliver,
		"backoff", rs.Queue.Backoff.String())
	w.mu.Lock()
	w.runs[run] = rs // a run's settings never change once recorded
	w.mu.Unlock()
	return rs, nil
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
