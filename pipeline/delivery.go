package pipeline

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
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

// Fetch pulls one job for a worker, waiting up to wait; it returns nil when none came.
// A job that arrives after ctx ended is handed straight back.
func (q *Queue) Fetch(ctx context.Context, wait time.Duration) (*Delivery, error) {
	batch, err := q.consumer.Fetch(1, jetstream.FetchMaxWait(wait))
	if err != nil {
		return nil, err
	}
	select {
	case msg, ok := <-batch.Messages():
		if !ok {
			return nil, batch.Error()
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
		return &Delivery{msg: msg, meta: meta}, nil
	case <-ctx.Done():
		go func() {
			for msg := range batch.Messages() {
				msg.Nak()
			}
		}()
		return nil, nil
	}
}

// IdleWorkers says how many workers wait for a job and how many jobs are out with one.
func (q *Queue) IdleWorkers(ctx context.Context) (waiting, inFlight int, err error) {
	info, err := q.consumer.Info(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("read consumer %s: %w", ConsumerName, err)
	}
	return info.NumWaiting, info.NumAckPending, nil
}

// Delivery is one delivery of a job to a worker, which settles it with exactly one of
// Ack, Nak, NakAfter or Term (and sends InProgress while it works).
type Delivery struct {
	msg  jetstream.Msg
	meta *jetstream.MsgMetadata
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

// Term ends the job for good: it is never delivered again.
func (d *Delivery) Term(reason string) error { return d.msg.TermWithReason(reason) }
