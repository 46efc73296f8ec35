package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// QueueConfig is how jobs are delivered. The defaults suit shards that take minutes.
type QueueConfig struct {
	// AckWait is how long a job may go without a heartbeat before JetStream gives it to
	// another worker (workers send one every AckWait/4 while they work).
	AckWait time.Duration
	// MaxDeliver is how many attempts a job gets before it is dead.
	MaxDeliver int
	// Backoff is the wait before attempt n+1 after attempt n failed (the last entry
	// repeats).
	Backoff []time.Duration
	// DedupWindow is how long the stream remembers message ids. A re-submit after the
	// window is still a no-op: submit checks the shards bucket before publishing.
	DedupWindow time.Duration
	// Replicas is the replication of the stream, consumer and buckets (a NATS cluster).
	Replicas int
}

// Queue defaults.
const (
	DefaultAckWait     = 60 * time.Second
	DefaultMaxDeliver  = 5
	DefaultDedupWindow = 2 * time.Hour
)

// DefaultBackoff spaces the attempts of a failing job.
var DefaultBackoff = []time.Duration{5 * time.Second, 30 * time.Second, 2 * time.Minute, 5 * time.Minute}

// WithDefaults fills the zero fields.
func (c QueueConfig) WithDefaults() QueueConfig {
	if c.AckWait <= 0 {
		c.AckWait = DefaultAckWait
	}
	if c.MaxDeliver <= 0 {
		c.MaxDeliver = DefaultMaxDeliver
	}
	if len(c.Backoff) == 0 {
		c.Backoff = DefaultBackoff
	}
	if c.DedupWindow <= 0 {
		c.DedupWindow = DefaultDedupWindow
	}
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	return c
}

// BackoffAfter is the wait before redelivering a job whose attempt-th delivery failed.
func (c QueueConfig) BackoffAfter(attempt int) time.Duration {
	if len(c.Backoff) == 0 {
		return 0
	}
	return c.Backoff[min(max(attempt-1, 0), len(c.Backoff)-1)]
}

// The consumer's metadata carries the settings JetStream does not hold itself, so that
// every worker reads the same ones from the server.
const (
	metaMaxDeliver = "capfilt.max_deliver"
	metaBackoff    = "capfilt.backoff"
)

// Queue is a run-independent handle on the stream, the workers' consumer and the two
// buckets.
type Queue struct {
	JS       jetstream.JetStream
	Stream   jetstream.Stream
	Consumer jetstream.Consumer
	Shards   jetstream.KeyValue
	Runs     jetstream.KeyValue
	Config   QueueConfig
}

// ErrNoQueue means the server has no capfilt stream yet: nothing was ever submitted.
var ErrNoQueue = errors.New("no capfilt job stream on this NATS server (nothing submitted yet)")

// EnsureQueue creates the stream, the consumer and the buckets, or updates them to cfg.
func EnsureQueue(ctx context.Context, js jetstream.JetStream, cfg QueueConfig) (*Queue, error) {
	cfg = cfg.WithDefaults()
	q := &Queue{JS: js, Config: cfg}
	var err error
	q.Stream, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        StreamName,
		Description: "capfilt jobs: one message per shard to process",
		Subjects:    []string{SubjectPrefix + ".>"},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Duplicates:  cfg.DedupWindow,
		Replicas:    cfg.Replicas,
		MaxMsgSize:  1 << 20,
	})
	if err != nil {
		return nil, fmt.Errorf("create stream %s: %w", StreamName, err)
	}
	q.Consumer, err = js.CreateOrUpdateConsumer(ctx, StreamName, jetstream.ConsumerConfig{
		Durable:       ConsumerName,
		Description:   "capfilt workers",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cfg.AckWait,
		FilterSubject: SubjectPrefix + ".>",
		// One more delivery than attempts: a job whose last attempt died with its worker
		// is delivered once more, only to be terminated and marked dead, instead of
		// staying in the stream for ever. Workers enforce MaxDeliver themselves.
		MaxDeliver: cfg.MaxDeliver + 1,
		Replicas:   cfg.Replicas,
		Metadata: map[string]string{
			metaMaxDeliver: strconv.Itoa(cfg.MaxDeliver),
			metaBackoff:    encodeDurations(cfg.Backoff),
		},
	})
	if err != nil {
		return nil, fmt.Errorf("create consumer %s: %w", ConsumerName, err)
	}
	for _, b := range []struct {
		dst  *jetstream.KeyValue
		name string
		desc string
	}{{&q.Shards, ShardsBucket, "capfilt shard states"}, {&q.Runs, RunsBucket, "capfilt run settings"}} {
		*b.dst, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: b.name, Description: b.desc, History: 1, Storage: jetstream.FileStorage, Replicas: cfg.Replicas,
		})
		if err != nil {
			return nil, fmt.Errorf("create KV bucket %s: %w", b.name, err)
		}
	}
	return q, nil
}

// OpenQueue binds to the stream, consumer and buckets a submit made, and reads the queue
// settings from the consumer. It returns ErrNoQueue when there are none.
func OpenQueue(ctx context.Context, js jetstream.JetStream) (*Queue, error) {
	q := &Queue{JS: js}
	var err error
	if q.Stream, err = js.Stream(ctx, StreamName); err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil, ErrNoQueue
		}
		return nil, fmt.Errorf("open stream %s: %w", StreamName, err)
	}
	if q.Consumer, err = js.Consumer(ctx, StreamName, ConsumerName); err != nil {
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			return nil, ErrNoQueue
		}
		return nil, fmt.Errorf("open consumer %s: %w", ConsumerName, err)
	}
	if q.Config, err = configFromConsumer(q.Consumer.CachedInfo().Config); err != nil {
		return nil, err
	}
	if q.Shards, err = js.KeyValue(ctx, ShardsBucket); err != nil {
		return nil, fmt.Errorf("open KV bucket %s: %w", ShardsBucket, err)
	}
	if q.Runs, err = js.KeyValue(ctx, RunsBucket); err != nil {
		return nil, fmt.Errorf("open KV bucket %s: %w", RunsBucket, err)
	}
	return q, nil
}

func configFromConsumer(cc jetstream.ConsumerConfig) (QueueConfig, error) {
	c := QueueConfig{AckWait: cc.AckWait, MaxDeliver: cc.MaxDeliver - 1, Replicas: cc.Replicas}
	if s, ok := cc.Metadata[metaMaxDeliver]; ok {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return c, fmt.Errorf("consumer %s: metadata %s=%q is not a count", ConsumerName, metaMaxDeliver, s)
		}
		c.MaxDeliver = n
	}
	if s, ok := cc.Metadata[metaBackoff]; ok {
		d, err := decodeDurations(s)
		if err != nil {
			return c, fmt.Errorf("consumer %s: metadata %s: %w", ConsumerName, metaBackoff, err)
		}
		c.Backoff = d
	}
	return c.WithDefaults(), nil
}

func encodeDurations(ds []time.Duration) string {
	s := make([]string, len(ds))
	for i, d := range ds {
		s[i] = d.String()
	}
	return strings.Join(s, ",")
}

func decodeDurations(s string) ([]time.Duration, error) {
	var out []time.Duration
	for _, f := range strings.Split(s, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(f))
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

// ReadConfig reads the queue settings from the consumer as they are now: a later submit
// may have changed them (EnsureQueue), and a heartbeat paced for an old, longer ack wait
// would let JetStream hand a running job to a second worker.
func (q *Queue) ReadConfig(ctx context.Context) (QueueConfig, error) {
	info, err := q.Consumer.Info(ctx)
	if err != nil {
		return QueueConfig{}, fmt.Errorf("read consumer %s: %w", ConsumerName, err)
	}
	return configFromConsumer(info.Config)
}

// RunSettings reads a run's settings; jetstream.ErrKeyNotFound when there is no such run.
func (q *Queue) RunSettings(ctx context.Context, run string) (RunSettings, error) {
	var rs RunSettings
	e, err := q.Runs.Get(ctx, run)
	if err != nil {
		return rs, fmt.Errorf("run %s: %w", run, err)
	}
	if err := json.Unmarshal(e.Value(), &rs); err != nil {
		return rs, fmt.Errorf("run %s: decode settings: %w", run, err)
	}
	return rs, nil
}

// ShardState reads one shard's state and its KV revision.
func (q *Queue) ShardState(ctx context.Context, run, shardID string) (ShardState, uint64, error) {
	e, err := q.Shards.Get(ctx, ShardKey(run, shardID))
	if err != nil {
		return ShardState{}, 0, fmt.Errorf("shard %s of run %s: %w", shardID, run, err)
	}
	st, err := DecodeState(e.Value())
	return st, e.Revision(), err
}

// maxErrorBytes keeps a state small: an error's first lines say what went wrong.
const maxErrorBytes = 2048

// PutShardState stores a state (stamping UpdatedAt), whatever was there before.
func (q *Queue) PutShardState(ctx context.Context, st ShardState) error {
	data, err := encodeForKV(&st)
	if err != nil {
		return err
	}
	_, err = q.Shards.Put(ctx, ShardKey(st.Run, st.Shard.ID), data)
	if err != nil {
		return fmt.Errorf("store state of shard %s of run %s: %w", st.Shard.ID, st.Run, err)
	}
	return nil
}

// CreateShardState stores a state only if the shard has none; jetstream.ErrKeyExists
// otherwise.
func (q *Queue) CreateShardState(ctx context.Context, st ShardState) error {
	data, err := encodeForKV(&st)
	if err != nil {
		return err
	}
	_, err = q.Shards.Create(ctx, ShardKey(st.Run, st.Shard.ID), data)
	return err
}

// UpdateShardState stores a state only if the shard's revision is still rev.
func (q *Queue) UpdateShardState(ctx context.Context, st ShardState, rev uint64) error {
	data, err := encodeForKV(&st)
	if err != nil {
		return err
	}
	_, err = q.Shards.Update(ctx, ShardKey(st.Run, st.Shard.ID), data, rev)
	return err
}

func encodeForKV(st *ShardState) ([]byte, error) {
	st.UpdatedAt = time.Now().UTC()
	if len(st.LastError) > maxErrorBytes {
		st.LastError = st.LastError[:maxErrorBytes] + "…"
	}
	return EncodeState(*st)
}

// RunShardStates reads the state of every shard of a run that has one, by shard id.
func (q *Queue) RunShardStates(ctx context.Context, run string) (map[string]ShardState, error) {
	w, err := q.Shards.Watch(ctx, ShardKeys(run), jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("read shard states of run %s: %w", run, err)
	}
	defer w.Stop()
	out := map[string]ShardState{}
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return nil, fmt.Errorf("read shard states of run %s: watcher stopped", run)
			}
			if e == nil { // every current value has been seen
				return out, nil
			}
			st, err := DecodeState(e.Value())
			if err != nil {
				return nil, fmt.Errorf("%s: %w", e.Key(), err)
			}
			out[st.Shard.ID] = st
		}
	}
}

// PendingJobs is how many jobs of a run are still in the stream: queued, running or
// waiting for a retry. A work-queue stream deletes a job once it is acked or terminated,
// so 0 means no worker will touch the run again.
func (q *Queue) PendingJobs(ctx context.Context, run string) (uint64, error) {
	subj := JobSubject(run)
	info, err := q.Stream.Info(ctx, jetstream.WithSubjectFilter(subj))
	if err != nil {
		return 0, fmt.Errorf("count jobs of run %s: %w", run, err)
	}
	return info.State.Subjects[subj], nil
}
