package workers

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/capfilt/capfilt/pipeline"
)

// How a worker tells NATS about the job it holds: heartbeats while it works, and the
// state, ack or terminate that settle it, each retried through a NATS outage.

// beat is a running heartbeat: the shard's progress and state it reports.
type beat struct {
	progress func(int64)
	set      func(pipeline.ShardState)
	stop     func()
}

// heartbeat tells JetStream the job is in progress every ackWait/4 (the run's own ack
// wait, which its consumer applies), and records the shard's progress in its state,
// until stop is called.
func (w *Worker) heartbeat(msg *pipeline.Delivery, st pipeline.ShardState, ackWait time.Duration, log *slog.Logger) beat {
	every := max(ackWait/4, 50*time.Millisecond)
	done := make(chan struct{})
	var progress atomic.Int64
	var mu sync.Mutex
	changed := false
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
			mu.Lock()
			n := progress.Load()
			write := n != last || changed
			last, changed = n, false
			st.Progress, st.BatchSize = n, w.sizer.Size()
			cur := st
			mu.Unlock()
			if write {
				ctx, cancel := context.WithTimeout(context.Background(), every)
				if err := w.q.PutShardState(ctx, cur); err != nil {
					log.Debug("progress not recorded", "err", err)
				}
				cancel()
			}
		}
	}()
	return beat{
		progress: func(n int64) { progress.Store(n) },
		set: func(s pipeline.ShardState) {
			mu.Lock()
			st, changed = s, true
			mu.Unlock()
			progress.Store(0)
		},
		stop: func() { close(done); wg.Wait() },
	}
}

// natsPatience is how long a stopping worker keeps trying to record a shard's end while
// NATS does not answer; a running one keeps trying until it does, since it can do nothing
// else without NATS.
func (w *Worker) natsPatience(began time.Time, ackWait time.Duration) bool {
	return !w.stopping.Load() || time.Since(began) < ackWait
}

// putState records a state, retrying through a NATS outage: a state lost would make the
// job's next delivery redo a finished shard, or count an attempt twice.
func (w *Worker) putState(ctx context.Context, st pipeline.ShardState, ackWait time.Duration, log *slog.Logger) {
	began, wait := time.Now(), 250*time.Millisecond
	for {
		err := w.q.PutShardState(ctx, st)
		if err == nil {
			return
		}
		if !w.natsPatience(began, ackWait) || ctx.Err() != nil {
			log.Error("shard state not recorded", "state", st.State, "err", err)
			return
		}
		sleep(ctx, wait)
		wait = min(2*wait, 5*time.Second)
	}
}

// ack acknowledges a job and waits for JetStream to confirm, retrying through a NATS
// outage; an ack that never lands only means the job is redelivered and found done.
func (w *Worker) ack(ctx context.Context, msg *pipeline.Delivery, ackWait time.Duration, log *slog.Logger) {
	began, wait := time.Now(), 250*time.Millisecond
	for {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := msg.Ack(actx)
		cancel()
		if err == nil {
			return
		}
		if !w.natsPatience(began, ackWait) || ctx.Err() != nil {
			log.Error("ack not confirmed; the job will be redelivered and found done", "err", err)
			return
		}
		sleep(ctx, wait)
		wait = min(2*wait, 5*time.Second)
	}
}

// term ends a job for good and waits (a little) until the stream has dropped it, so that
// maybeFinish counts the run's jobs without it.
func (w *Worker) term(ctx context.Context, msg *pipeline.Delivery, reason string, log *slog.Logger) {
	tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := msg.Term(tctx, truncate(reason, 1024)); err != nil {
		log.Warn("terminate not confirmed", "err", err)
	}
}

// maybeFinish asks the finisher to close a run when none of its jobs remain in the
// stream. Acks and terminates are confirmed before this runs, so of the workers that
// settle a run's last jobs at once, the last one sees none left.
func (w *Worker) maybeFinish(ctx context.Context, run string, log *slog.Logger) {
	if w.cfg.Finisher == nil {
		return
	}
	n, err := w.q.PendingJobs(ctx, run)
	if err != nil || n > 0 {
		return
	}
	// The manifest is an output: a store outage holds it up, a stop does not lose it
	// (FinishRun retries through the outage as long as fctx lasts).
	fctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	if err := w.cfg.Finisher.FinishRun(fctx, run); err != nil {
		log.Warn("run not finished", "err", err)
	}
}
