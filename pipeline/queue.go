package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/capfilt/capfilt/pipeline/spec"
)

// QueueConfig is what the server holds for every run: the ack wait JetStream enforces on
// the one consumer, and the stream's dedup window and replication. A run's attempts and
// backoff are its own (RunSettings.Queue); workers apply them per job.
type QueueConfig struct {
	// AckWait is how long a job may go without a heartbeat before JetStream gives it to
	// another worker (workers send one every AckWait/4 while they work).
	AckWait time.Duration
	// DedupWindow is how long the stream remembers message ids. A re-submit after the
	// window is still a no-op: submit checks the shards bucket before publishing.
	DedupWindow time.Duration
	// Replicas is the replication of the stream, consumer and buckets (a NATS cluster).
	Replicas int
}

// DefaultDedupWindow is how long a job's message id is remembered by default.
const DefaultDedupWindow = 2 * time.Hour

// WithDefaults fills the zero fields.
func (c QueueConfig) WithDefaults() QueueConfig {
	if c.AckWait <= 0 {
		c.AckWait = spec.DefaultAckWait
	}
	if c.DedupWindow <= 0 {
		c.DedupWindow = DefaultDedupWindow
	}
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	return c
}

// Queue is a run-independent handle on the stream, the workers' consumer and the two
// buckets. Its methods are every operation the coordinator and the workers need, so
// that the NATS handles stay here.
type Queue struct {
	js       jetstream.JetStream
	stream   jetstream.Stream
	consumer jetstream.Consumer
	shards   jetstream.KeyValue
	runs     jetstream.KeyValue
	config   QueueConfig
}

// The errors callers tell apart, whatever NATS calls them.
var (
	// ErrNoQueue means the server has no capfilt stream yet: nothing was ever submitted.
	ErrNoQueue = errors.New("no capfilt job stream on this NATS server (nothing submitted yet)")
	// ErrNoJetStream means the server runs without JetStream.
	ErrNoJetStream = jetstream.ErrJetStreamNotEnabled
	// ErrNotFound means there is no such run or shard state.
	ErrNotFound = jetstream.ErrKeyNotFound
	// ErrExists means a create found a value already there.
	ErrExists = jetstream.ErrKeyExists
)

// EnsureQueue creates the stream, the consumer and the buckets, or updates them to cfg.
func EnsureQueue(ctx context.Context, js jetstream.JetStream, cfg QueueConfig) (*Queue, error) {
	cfg = cfg.WithDefaults()
	q := &Queue{js: js, config: cfg}
	var err error
	q.stream, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
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
	q.consumer, err = js.CreateOrUpdateConsumer(ctx, StreamName, jetstream.ConsumerConfig{
		Durable:       ConsumerName,
		Description:   "capfilt workers",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cfg.AckWait,
		FilterSubject: SubjectPrefix + ".>",
		// Runs differ in their attempts, so the server delivers without a limit and the
		// workers count: a job past its run's attempts is terminated and marked dead,
		// also when the worker of its last attempt died without a word.
		MaxDeliver: -1,
		Replicas:   cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("create consumer %s: %w", ConsumerName, err)
	}
	for _, b := range []struct {
		dst  *jetstream.KeyValue
		name string
		desc string
	}{{&q.shards, ShardsBucket, "capfilt shard states"}, {&q.runs, RunsBucket, "capfilt run settings"}} {
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
	q := &Queue{js: js}
	var err error
	if q.stream, err = js.Stream(ctx, StreamName); err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil, ErrNoQueue
		}
		return nil, fmt.Errorf("open stream %s: %w", StreamName, err)
	}
	if q.consumer, err = js.Consumer(ctx, StreamName, ConsumerName); err != nil {
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			return nil, ErrNoQueue
		}
		return nil, fmt.Errorf("open consumer %s: %w", ConsumerName, err)
	}
	q.config = configOf(q.stream.CachedInfo().Config, q.consumer.CachedInfo().Config)
	if q.shards, err = js.KeyValue(ctx, ShardsBucket); err != nil {
		return nil, fmt.Errorf("open KV bucket %s: %w", ShardsBucket, err)
	}
	if q.runs, err = js.KeyValue(ctx, RunsBucket); err != nil {
		return nil, fmt.Errorf("open KV bucket %s: %w", RunsBucket, err)
	}
	return q, nil
}

func configOf(sc jetstream.StreamConfig, cc jetstream.ConsumerConfig) QueueConfig {
	return QueueConfig{AckWait: cc.AckWait, DedupWindow: sc.Duplicates, Replicas: cc.Replicas}.WithDefaults()
}

// Config is the queue settings as they were when the queue was opened.
func (q *Queue) Config() QueueConfig { return q.config }

// ReadConfig reads the queue settings from the consumer as they are now: a later submit
// may have changed them (EnsureQueue), and a heartbeat paced for an old, longer ack wait
// would let JetStream hand a running job to a second worker.
func (q *Queue) ReadConfig(ctx context.Context) (QueueConfig, error) {
	info, err := q.consumer.Info(ctx)
	if err != nil {
		return QueueConfig{}, fmt.Errorf("read consumer %s: %w", ConsumerName, err)
	}
	return configOf(q.stream.CachedInfo().Config, info.Config), nil
}

// RunSettings reads a run's settings; ErrNotFound when there is no such run.
func (q *Queue) RunSettings(ctx context.Context, run string) (RunSettings, error) {
	var rs RunSettings
	e, err := q.runs.Get(ctx, run)
	if err != nil {
		return rs, fmt.Errorf("run %s: %w", run, err)
	}
	if err := json.Unmarshal(e.Value(), &rs); err != nil {
		return rs, fmt.Errorf("run %s: decode settings: %w", run, err)
	}
	return rs, nil
}

// CreateRunSettings records a run's settings only if the run has none; ErrExists
// otherwise.
func (q *Queue) CreateRunSettings(ctx context.Context, rs RunSettings) error {
	data, err := json.Marshal(rs)
	if err != nil {
		return fmt.Errorf("encode settings of run %s: %w", rs.Run, err)
	}
	if _, err := q.runs.Create(ctx, rs.Run, data); err != nil {
		return fmt.Errorf("record settings of run %s: %w", rs.Run, err)
	}
	return nil
}

// ShardState reads one shard's state and its KV revision.
func (q *Queue) ShardState(ctx context.Context, run, shardID string) (ShardState, uint64, error) {
	e, err := q.shards.Get(ctx, ShardKey(run, shardID))
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
	_, err = q.shards.Put(ctx, ShardKey(st.Run, st.Shard.ID), data)
	if err != nil {
		return fmt.Errorf("store state of shard %s of run %s: %w", st.Shard.ID, st.Run, err)
	}
	return nil
}

// CreateShardState stores a state only if the shard has none; ErrExists otherwise.
func (q *Queue) CreateShardState(ctx context.Context, st ShardState) error {
	data, err := encodeForKV(&st)
	if err != nil {
		return err
	}
	_, err = q.shards.Create(ctx, ShardKey(st.Run, st.Shard.ID), data)
	return err
}

// UpdateShardState stores a state only if the shard's revision is still rev.
func (q *Queue) UpdateShardState(ctx context.Context, st ShardState, rev uint64) error {
	data, err := encodeForKV(&st)
	if err != nil {
		return err
	}
	_, err = q.shards.Update(ctx, ShardKey(st.Run, st.Shard.ID), data, rev)
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
	w, err := q.shards.Watch(ctx, ShardKeys(run), jetstream.IgnoreDeletes())
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
	info, err := q.stream.Info(ctx, jetstream.WithSubjectFilter(subj))
	if err != nil {
		return 0, fmt.Errorf("count jobs of run %s: %w", run, err)
	}
	return info.State.Subjects[subj], nil
}

// QueueStats are the stream's and the workers' consumer's counts, as NATS reports them.
type QueueStats struct {
	// Jobs is every job in the stream: queued, running or waiting for a retry.
	Jobs uint64
	// JobsByRun is Jobs by run, for the runs that have any.
	JobsByRun map[string]uint64
	// Undelivered jobs have not been given to any worker yet.
	Undelivered uint64
	// InFlight jobs were delivered and are not yet acknowledged.
	InFlight int
	// Redelivered jobs were delivered more than once and are not yet acknowledged.
	Redelivered int
}

// Stats reads the queue's counts; it changes nothing.
func (q *Queue) Stats(ctx context.Context) (QueueStats, error) {
	info, err := q.stream.Info(ctx, jetstream.WithSubjectFilter(SubjectPrefix+".>"))
	if err != nil {
		return QueueStats{}, fmt.Errorf("read stream %s: %w", StreamName, err)
	}
	ci, err := q.consumer.Info(ctx)
	if err != nil {
		return QueueStats{}, fmt.Errorf("read consumer %s: %w", ConsumerName, err)
	}
	st := QueueStats{Jobs: info.State.Msgs, JobsByRun: map[string]uint64{}, Undelivered: ci.NumPending,
		InFlight: ci.NumAckPending, Redelivered: ci.NumRedelivered}
	for subj, n := range info.State.Subjects {
		if run, ok := strings.CutPrefix(subj, SubjectPrefix+"."); ok && n > 0 {
			st.JobsByRun[run] = n
		}
	}
	return st, nil
}
