package workers

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/capfilt/capfilt/pipeline"
	"github.com/capfilt/capfilt/shards"
)

// inputError is a failure to read the input shard itself: opening it, or one of its
// samples. Unless the store was unavailable, every attempt would fail the same way.
type inputError struct{ err error }

func (e *inputError) Error() string { return e.err.Error() }
func (e *inputError) Unwrap() error { return e.err }

// failure is what a failed attempt at a shard says about the next one.
type failure int

const (
	// failureOther may pass on another attempt (the model stage failed, an output was
	// refused): the attempt counts and the shard is retried with the run's backoff.
	failureOther failure = iota
	// failureOutage is a store that did not answer or answered it could not serve (see
	// shards.Transient): the worker waits for the store and runs the shard again without
	// using up an attempt.
	failureOutage
	// failureShard is a shard that cannot be processed (not a tar, no image column, a
	// missing object): it is dead at once, with the reason.
	failureShard
)

func (f failure) String() string {
	return [...]string{"failed", "store unavailable", "unusable shard"}[f]
}

func classify(err error) failure {
	var in *inputError
	switch {
	case errors.Is(err, context.Canceled):
		return failureOther
	case shards.Transient(err):
		return failureOutage
	case errors.As(err, &in):
		return failureShard
	}
	return failureOther
}

// maxProbeWait bounds the wait between two probes of an unavailable store, whatever the
// run's backoff says: the shard should start again soon after the store is back.
const maxProbeWait = 30 * time.Second

// storeAnswers reports whether the store serves the job's input and output locations (the
// output in the run's format): an answer that the object is missing is an answer too.
func (w *Worker) storeAnswers(ctx context.Context, job pipeline.Job, rs pipeline.RunSettings) bool {
	for _, u := range []shards.URL{job.Shard.URL, shards.OutputURL(job.Output, job.Shard.URL, rs.Format())} {
		if _, err := w.cfg.Store.Stat(ctx, u); shards.Transient(err) {
			return false
		}
	}
	return true
}

// waitForStore is what a worker does after an attempt failed with a transient error. It
// probes the store at once: when it answers, the failure was no outage and the attempt
// counts (false). Otherwise the worker keeps the job (its heartbeat goes on) and takes no
// other work: it probes again after each of the run's backoff waits (at most
// maxProbeWait) until the store answers, and returns true, or false when ctx ends.
func (w *Worker) waitForStore(ctx context.Context, job pipeline.Job, rs pipeline.RunSettings, log *slog.Logger) bool {
	if w.storeAnswers(ctx, job, rs) {
		return false
	}
	began := time.Now()
	log.Warn("store unavailable: holding the job until it answers")
	for n := 1; ; n++ {
		sleep(ctx, min(rs.Queue.BackoffAfter(n), maxProbeWait))
		if ctx.Err() != nil {
			return false
		}
		if w.storeAnswers(ctx, job, rs) {
			log.Info("store answers again: running the shard again", "waited_seconds", time.Since(began).Seconds())
			return true
		}
	}
}
