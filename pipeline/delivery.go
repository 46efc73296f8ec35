package pipeline

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/capfilt/capfilt/pipeline/spec"
)

// PublishJobs publishes jobs, each under its message id, and waits for the stream to take
// them. fresh[i] says whether job i was new to the stream (a message id seen inside the
// dedup window is not); on an error, fresh holds the jobs taken before it.
func (q *Queue) PublishJobs(ctx context.Context, jobs []Job) (fresh []bool, err error) {
	futures := make([]jetstream.PubAckFuture, 0, len(jobs))
	for _, j := range jobs {
		data, err := EncodeJob(j)
		if err != nil {
			return nil, err
		}
		f, err := q.js.PublishAsync(JobSubject(j.Run), data, jetstream.WithMsgID(j.MsgID()))
		if err != nil {
			return nil, fmt.Errorf("publish job of shard %s: %w", j.Shard.URL, err)
		}
		futures = append(futures, f)
	}
	for i, f := range futures {
		select {
		case ack := <-f.Ok():
			fresh = append(fresh, !ack.Duplicate)
		case err := <-f.Err():
			return fresh, fmt.Errorf("publish job of shard %s: %w", jobs[i].Shard.URL, err)
		case <-ctx.Done():
			return fresh, ctx.Err()
		}
	}
	return fresh, nil
}

// PublishJob publishes one job and waits for the stream to take it.
func (q *Queue) PublishJob(ctx context.Context, j Job) (fresh bool, err error) {
	data, err := EncodeJob(j)
	if err != nil {
		return false, err
	}
	ack, err := q.js.Publish(ctx, JobSubject(j.Run), data, jetstream.WithMsgID(j.MsgID()))
	if err != nil {
		return false, fmt.Errorf("publish job %s: %w", j.MsgID(), err)
	}
	return !ack.Duplicate, nil
}

// Fetch pulls one job of any run for a worker, waiting up to wait; it returns nil when
// none came. Runs take turns: each call asks the runs with jobs in the stream, starting
// one further along than the last call, so a small run is not stuck behind a big one.
// A job that arrives after ctx ended is handed straight back.
func (q *Queue) Fetch(ctx context.Context, wait time.Duration) (*Delivery, error) {
	deadline := time.Now().Add(wait)
	// Asking every run costs a request per run, so an idle worker asks a few times per
	// wait, at most once a second.
	pause := min(max(wait/5, 20*time.Millisecond), time.Second)
	for {
		d, err := q.fetchAny(ctx)
		if d != nil || err != nil {
			return d, err
		}
		left := time.Until(deadline)
		if left <= 0 {
			return nil, nil
		}
		select {
		case <-ctx.Done():
			return nil, nil
		case <-time.After(min(pause, left)):
		}
	}
}

func (q *Queue) fetchAny(ctx context.Context) (*Delivery, error) {
	runs, err := q.runsWithJobs(ctx)
	if err != nil || len(runs) == 0 {
		return nil, err
	}
	first := int(q.turn.Add(1) % uint64(len(runs)))
	var errs []error
	for i := range runs {
		run := runs[(first+i)%len(runs)]
		d, err := q.fetchRun(ctx, run)
		if d != nil {
			return d, nil
		}
		if err != nil {
			errs = append(errs, err)
		}
		if ctx.Err() != nil {
			return nil, nil
		}
	}
	return nil, errors.Join(errs...)
}

// fetchRun takes a job of one run if one is ready now.
func (q *Queue) fetchRun(ctx context.Context, run string) (*Delivery, error) {
	c, err := q.runConsumer(ctx, run)
	if err != nil {
		return nil, err
	}
	batch, err := c.FetchNoWait(1)
	if err != nil {
		if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrConsumerDeleted) {
			q.forget(run)
		}
		return nil, err
	}
	msg, ok := <-batch.Messages()
	if !ok {
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrConsumerDeleted) {
				q.forget(run)
			}
			return nil, err
		}
		return nil, nil
	}
	if ctx.Err() != nil {
		msg.Nak()
		return nil, nil
	}
	meta, err := msg.Metadata()
	if err != nil {
		msg.Term()
		return nil, fmt.Errorf("job without metadata dropped: %w", err)
	}
	return &Delivery{msg: msg, meta: meta, stream: q.stream}, nil
}

// runConsumer is a run's consumer. A run with jobs and no consumer (its consumer was
// deleted when it finished, and a retry came after; or it was submitted by an older
// capfilt) gets one made from its recorded queue settings, or the defaults for a run
// with none, whose jobs a worker then terminates.
func (q *Queue) runConsumer(ctx context.Context, run string) (jetstream.Consumer, error) {
	q.mu.Lock()
	c, ok := q.consumers[run]
	q.mu.Unlock()
	if ok {
		return c, nil
	}
	c, err := q.stream.Consumer(ctx, RunConsumerName(run))
	if err == nil {
		q.mu.Lock()
		q.consumers[run] = c
		q.mu.Unlock()
		return c, nil
	}
	if !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, fmt.Errorf("consumer of run %s: %w", run, err)
	}
	rq := spec.DefaultQueue()
	if rs, err := q.RunSettings(ctx, run); err == nil {
		rq = rs.Queue
	} else if !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	if err := q.EnsureRunConsumer(ctx, run, rq); err != nil {
		return nil, err
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.consumers[run], nil
}

func (q *Queue) forget(run string) {
	q.mu.Lock()
	delete(q.consumers, run)
	q.mu.Unlock()
}

// Delivery is one delivery of a job to a worker, which settles it with exactly one of
// Ack, Nak, NakAfter or Term (and sends InProgress while it works).
type Delivery struct {
	msg    jetstream.Msg
	meta   *jetstream.MsgMetadata
	stream jetstream.Stream
}

// Data is the job as published (DecodeJob reads it).
func (d *Delivery) Data() []byte { return d.msg.Data() }

// Subject is the subject the job was published on.
func (d *Delivery) Subject() string { return d.msg.Subject() }

// Attempt counts the deliveries of this job, this one included (1 the first time).
func (d *Delivery) Attempt() int { return int(d.meta.NumDelivered) }

// Published is when the job entered the stream.
func (d *Delivery) Published() time.Time { return d.meta.Timestamp }

// InProgress restarts the job's ack wait: the worker is alive and still on it.
func (d *Delivery) InProgress() error { return d.msg.InProgress() }

// Ack settles the job as done and waits for the server to confirm; a job acked before
// is no error.
func (d *Delivery) Ack(ctx context.Context) error {
	if err := d.msg.DoubleAck(ctx); err != nil && !errors.Is(err, jetstream.ErrMsgAlreadyAckd) {
		return err
	}
	return nil
}

// Nak hands the job back for another delivery at once.
func (d *Delivery) Nak() error { return d.msg.Nak() }

// NakAfter hands the job back for another delivery after delay.
func (d *Delivery) NakAfter(delay time.Duration) error { return d.msg.NakWithDelay(delay) }

// Term ends the job for good: it is never delivered again. JetStream does not confirm a
// terminate, so Term waits (within ctx) until the stream has dropped the job: whoever
// counts the run's jobs next must not count this one.
func (d *Delivery) Term(ctx context.Context, reason string) error {
	if err := d.msg.TermWithReason(reason); err != nil {
		return err
	}
	for {
		_, err := d.stream.GetMsg(ctx, d.meta.Sequence.Stream)
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}
