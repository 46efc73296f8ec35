package main

import (
	"fmt"
	"time"

	"github.com/spf13/pflag"

	"github.com/capfilt/capfilt/pipeline"
	"github.com/capfilt/capfilt/pipeline/spec"
)

// queueOptions are a run's queue settings (spec.Queue) and the server's: the dedup window
// and the replication of the stream, consumers and buckets.
type queueOptions struct {
	run         spec.Queue
	DedupWindow time.Duration
	Replicas    int
}

func (o *queueOptions) AddFlags(f *pflag.FlagSet) {
	d := spec.DefaultQueue()
	o.run = d
	f.DurationVar(&o.run.AckWait, "ack-wait", d.AckWait, "a job of this run without a worker heartbeat for this long goes to another worker")
	f.IntVar(&o.run.MaxDeliver, "max-deliver", d.MaxDeliver, "attempts a shard of this run gets before it is dead")
	f.Var(backoffValue{&o.run.Backoff}, "retry-backoff", "waits before the 2nd, 3rd, ... attempt of a failed shard (the last repeats)")
	f.DurationVar(&o.DedupWindow, "dedup-window", pipeline.DefaultDedupWindow, "how long NATS drops a re-published job by its id")
	f.IntVar(&o.Replicas, "queue-replicas", 1, "replicas of the job stream, consumers and KV buckets: 3 on a NATS cluster that must survive losing a server (never lowered)")
}

// resolve returns the run's queue settings and the server's.
func (o *queueOptions) resolve(a *app) (spec.Queue, pipeline.QueueConfig, error) {
	if err := a.badSettings(o.run.Validate()); err != nil {
		return o.run, pipeline.QueueConfig{}, err
	}
	if err := a.positiveDuration("dedup-window", o.DedupWindow); err != nil {
		return o.run, pipeline.QueueConfig{}, err
	}
	if o.Replicas < 1 || o.Replicas > pipeline.MaxReplicas {
		return o.run, pipeline.QueueConfig{}, a.bad("queue-replicas", o.Replicas, fmt.Sprintf("must be 1 to %d", pipeline.MaxReplicas))
	}
	return o.run, pipeline.QueueConfig{DedupWindow: o.DedupWindow, Replicas: o.Replicas}, nil
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
