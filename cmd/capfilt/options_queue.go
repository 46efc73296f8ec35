package main

import (
	"time"

	"github.com/spf13/pflag"

	"github.com/capfilt/capfilt/pipeline"
	"github.com/capfilt/capfilt/pipeline/spec"
)

// queueOptions are a run's queue settings (spec.Queue) and the server's dedup window.
type queueOptions struct {
	run         spec.Queue
	DedupWindow time.Duration
}

func (o *queueOptions) AddFlags(f *pflag.FlagSet) {
	d := spec.DefaultQueue()
	o.run = d
	f.DurationVar(&o.run.AckWait, "ack-wait", d.AckWait, "a job without a worker heartbeat for this long goes to another worker (the server's, set by the latest submit)")
	f.IntVar(&o.run.MaxDeliver, "max-deliver", d.MaxDeliver, "attempts a shard of this run gets before it is dead")
	f.Var(backoffValue{&o.run.Backoff}, "retry-backoff", "waits before the 2nd, 3rd, ... attempt of a failed shard (the last repeats)")
	f.DurationVar(&o.DedupWindow, "dedup-window", pipeline.DefaultDedupWindow, "how long NATS drops a re-published job by its id")
}

// resolve returns the run's queue settings and the server's.
func (o *queueOptions) resolve(a *app) (spec.Queue, pipeline.QueueConfig, error) {
	if err := a.badSettings(o.run.Validate()); err != nil {
		return o.run, pipeline.QueueConfig{}, err
	}
	if err := a.positiveDuration("dedup-window", o.DedupWindow); err != nil {
		return o.run, pipeline.QueueConfig{}, err
	}
	return o.run, pipeline.QueueConfig{AckWait: o.run.AckWait, DedupWindow: o.DedupWindow}, nil
}

// backoffValue is a spec.Backoff as a flag.
type backoffValue struct{ b *spec.Backoff }

func (v backoffValue) String() string {
	if v.b == nil {
		return ""
	}
	return v.b.String()
}
func (v backoffValue) Set(s string) error { return v.b.UnmarshalText([]byte(s)) }
func (v backoffValue) Type() string       { return "durations" }
