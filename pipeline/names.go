package pipeline

import (
	"fmt"
	"regexp"
	"strconv"
)

// The names every process agrees on. One stream holds every run's jobs, each run's on
// its own subject, so `status` and the manifest count a run's pending jobs without a
// stream per run; each run has its own durable consumer (RunConsumerName), which is how
// its ack wait is its own.
const (
	// StreamName is the work-queue stream that holds the jobs not yet done.
	StreamName = "CAPFILT_JOBS"
	// SubjectPrefix starts every job subject: capfilt.jobs.<run>.
	SubjectPrefix = "capfilt.jobs"
	// RunConsumerPrefix starts the name of each run's durable pull consumer.
	RunConsumerPrefix = "capfilt-run-"
	// ShardsBucket is the KV bucket of shard states, keyed <run>.<shard id>.
	ShardsBucket = "capfilt-shards"
	// RunsBucket is the KV bucket of run settings, keyed <run>.
	RunsBucket = "capfilt-runs"
)

// legacyConsumerName is the one consumer every run shared before runs had their own.
const legacyConsumerName = "capfilt-workers"

// RunConsumerName is the durable consumer a run's jobs are delivered through.
func RunConsumerName(run string) string { return RunConsumerPrefix + run }

// JobSubject is the subject a run's jobs are published on.
func JobSubject(run string) string { return SubjectPrefix + "." + run }

// MsgID is the JetStream message id of a shard's first job: the stream drops a second
// publish with the same id inside its dedup window, so a re-submit is a no-op.
func MsgID(run, shardID string) string { return run + "/" + shardID }

// RetryMsgID is the message id of the n-th retry of a shard. A work-queue stream deletes a
// job once it is acked or terminated, so a retry is a new message with a new id.
func RetryMsgID(run, shardID string, n int) string {
	return run + "/" + shardID + "/retry-" + strconv.Itoa(n)
}

// ShardKey is the KV key of a shard's state.
func ShardKey(run, shardID string) string { return run + "." + shardID }

// ShardKeys is the KV filter that matches every shard of a run.
func ShardKeys(run string) string { return run + ".*" }

// runNameRE keeps run names usable as a NATS subject token, a KV key and a file name.
var runNameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ValidateRunName checks that name can name a run.
func ValidateRunName(name string) error {
	if !runNameRE.MatchString(name) {
		return fmt.Errorf("run name %q: use 1 to 64 letters, digits, '-' or '_'", name)
	}
	return nil
}

// ShardID is the name of the shard at index i of a run of n shards: its zero-padded
// index, at least 5 digits wide, so ids sort in input order.
func ShardID(i, n int) string {
	width := max(5, len(strconv.Itoa(max(n-1, 0))))
	return fmt.Sprintf("%0*d", width, i)
}
