package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/capfilt/capfilt/pipeline/spec"
)

// QueueConfig is what the server holds for every run: the stream's dedup window and the
// replication of the stream, the consumers and the buckets. What differs between runs
// (ack wait, attempts, backoff) is each run's own (RunSettings.Queue): every run has its
// own consumer with its own ack wait, and workers apply its attempts and backoff.
type QueueConfig struct {
	// DedupWindow is how long the stream remembers message ids. A re-submit after the
	// window is still a no-op: submit checks the shards bucket before publishing.
	DedupWindow time.Duration
	// Replicas is the replication of the stream, consumers and buckets (3 on a NATS
	// cluster that must survive losing a server). EnsureQueue never lowers it.
	Replicas int
}

// DefaultDedupWindow is how long a job's message id is remembered by default.
const DefaultDedupWindow = 2 * time.Hour

// MaxReplicas is the most replicas JetStream keeps of a stream.
const MaxReplicas = 5

// WithDefaults fills the zero fields.
func (c QueueConfig) WithDefaults() QueueConfig {
	if c.DedupWindow <= 0 {
		c.DedupWindow = DefaultDedupWindow
	}
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	return c
}

// Queue is a handle on the job stream, the runs' consumers and the two buckets. Its
// methods are every operation the coordinator and the workers need, so that the NATS
// handles stay here. It is safe for concurrent use (capfilt run's workers share one).
type Queue struct {
	js     jetstream.JetStream
	stream jetstream.Stream
	shards jetstream.KeyValue
	runs   jetstream.KeyValue
	config QueueConfig

	mu        sync.Mutex
	consumers map[string]jetstream.Consumer // by run
	turn      atomic.Uint64                 // which run Fetch asks first
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

// EnsureQueue creates the stream and the buckets, or updates them to cfg. Replication
// is only ever raised: a queue an operator runs at R3 stays at R3 when a submit that
// does not say so comes along.
func EnsureQueue(ctx context.Context, js jetstream.JetStream, cfg QueueConfig) (*Queue, error) {
	cfg = cfg.WithDefaults()
	replicas := func(stream string) int {
		if st, err := js.Stream(ctx, stream); err == nil {
			return max(cfg.Replicas, st.CachedInfo().Config.Replicas)
		}
		return cfg.Replicas
	}
	q := &Queue{js: js, consumers: map[string]jetstream.Consumer{}}
	var err error
	cfg.Replicas = replicas(StreamName)
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
	q.config = cfg
	for _, b := range []struct {
		dst  *jetstream.KeyValue
		name string
		desc string
	}{{&q.shards, ShardsBucket, "capfilt shard states"}, {&q.runs, RunsBucket, "capfilt run settings"}} {
		*b.dst, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: b.name, Description: b.desc, History: 1, Storage: jetstream.FileStorage, Replicas: replicas("KV_" + b.name),
		})
		if err != nil {
			return nil, fmt.Errorf("create KV bucket %s: %w", b.name, err)
		}
	}
	// capfilt before per-run consumers had one consumer on every job subject; a work-queue
	// stream refuses a second consumer on subjects it already covers. Deleting it hands
	// the jobs it had out to the runs' consumers.
	if err := js.DeleteConsumer(ctx, StreamName, legacyConsumerName); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, fmt.Errorf("delete the old shared consumer %s: %w", legacyConsumerName, err)
	}
	return q, nil
}

// OpenQueue binds to the stream and buckets a submit made. It returns ErrNoQueue when
// there are none.
func OpenQueue(ctx context.Context, js jetstream.JetStream) (*Queue, error) {
	q := &Queue{js: js, consumers: map[string]jetstream.Consumer{}}
	var err error
	if q.stream, err = js.Stream(ctx, StreamName); err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil, ErrNoQueue
		}
		return nil, fmt.Errorf("open stream %s: %w", StreamName, err)
	}
	sc := q.stream.CachedInfo().Config
	q.config = QueueConfig{DedupWindow: sc.Duplicates, Replicas: sc.Replicas}.WithDefaults()
	if q.shards, err = js.KeyValue(ctx, ShardsBucket); err != nil {
		return nil, fmt.Errorf("open KV bucket %s: %w", ShardsBucket, err)
	}
	if q.runs, err = js.KeyValue(ctx, RunsBucket); err != nil {
		return nil, fmt.Errorf("open KV bucket %s: %w", RunsBucket, err)
	}
	return q, nil
}

// Config is the server's queue settings as they were when the queue was opened.
func (q *Queue) Config() QueueConfig { return q.config }

// EnsureRunConsumer creates the consumer that delivers a run's jobs, with the run's ack
// wait, or updates it to rq. JetStream holds one ack wait per consumer, so a consumer per
// run is what lets two runs on one queue differ in it. Delivery is unlimited: runs
// differ in their attempts too, so the workers count them (see ShardState.Attempts).
func (q *Queue) EnsureRunConsumer(ctx context.Context, run string, rq spec.Queue) error {
	rq = rq.WithDefaults()
	c, err := q.stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       RunConsumerName(run),
		Description:   "capfilt workers, run " + run,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       rq.AckWait,
		FilterSubject: JobSubject(run),
		MaxDeliver:    -1,
		Replicas:      q.config.Replicas,
	})
	if err != nil {
		return fmt.Errorf("create the consumer of run %s: %w", run, err)
	}
	q.mu.Lock()
	q.consumers[run] = c
	q.mu.Unlock()
	return nil
}

// RunAckWait is the ack wait JetStream applies to a run's jobs now.
func (q *Queue) RunAckWait(ctx context.Context, run string) (time.Duration, error) {
	c, err := q.stream.Consumer(ctx, RunConsumerName(run))
	if err != nil {
		return 0, fmt.Errorf("consumer of run %s: %w", run, err)
	}
	return c.CachedInfo().Config.AckWait, nil
}

// DeleteRunConsumer removes a finished run's consumer, so that the server holds none per
// run that ever was. A job published later (a retry) gets a new one: the retry makes it,
// and a worker that finds jobs of a run without a consumer makes it from the run's
// settings.
func (q *Queue) DeleteRunConsumer(ctx context.Context, run string) error {
	q.mu.Lock()
	delete(q.consumers, run)
	q.mu.Unlock()
	if err := q.stream.DeleteConsumer(ctx, RunConsumerName(run)); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("delete the consumer of run %s: %w", run, err)
	}
	return nil
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

// QueueStats are the stream's and the runs' consumers' counts, as NATS reports them.
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

// Stats reads the queue's counts, summed over the consumers of the runs that have jobs
// (a run whose consumer is not made yet counts its jobs as undelivered); it changes
// nothing.
func (q *Queue) Stats(ctx context.Context) (QueueStats, error) {
	info, err := q.stream.Info(ctx, jetstream.WithSubjectFilter(SubjectPrefix+".>"))
	if err != nil {
		return QueueStats{}, fmt.Errorf("read stream %s: %w", StreamName, err)
	}
	st := QueueStats{Jobs: info.State.Msgs, JobsByRun: map[string]uint64{}}
	for subj, n := range info.State.Subjects {
		if run, ok := strings.CutPrefix(subj, SubjectPrefix+"."); ok && n > 0 {
			st.JobsByRun[run] = n
		}
	}
	for run, n := range st.JobsByRun {
		c, err := q.stream.Consumer(ctx, RunConsumerName(run))
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			st.Undelivered += n
			continue
		}
		if err != nil {
			return QueueStats{}, fmt.Errorf("read the consumer of run %s: %w", run, err)
		}
		ci := c.CachedInfo() // Consumer has just fetched it
		st.Undelivered += ci.NumPending
		st.InFlight += ci.NumAckPending
		st.Redelivered += ci.NumRedelivered
	}
	return st, nil
}

// runsWithJobs names the runs that have jobs in the stream (queued, out with a worker or
// waiting for a retry), sorted.
func (q *Queue) runsWithJobs(ctx context.Context) ([]string, error) {
	info, err := q.stream.Info(ctx, jetstream.WithSubjectFilter(SubjectPrefix+".>"))
	if err != nil {
		return nil, fmt.Errorf("list runs with jobs: %w", err)
	}
	runs := make([]string, 0, len(info.State.Subjects))
	for subj, n := range info.State.Subjects {
		if run, ok := strings.CutPrefix(subj, SubjectPrefix+"."); ok && n > 0 {
			runs = append(runs, run)
		}
	}
	sort.Strings(runs)
	return runs, nil
}
