package pipeline

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/capfilt/capfilt/pipeline/spec"
	"github.com/capfilt/capfilt/shards"
)

// ShardRef names one input shard of a run.
type ShardRef struct {
	// Index is the shard's position in the run's expanded input.
	Index int `json:"index"`
	// ID is the shard's name in message ids and KV keys (ShardID of Index).
	ID string `json:"id"`
	// URL is where the shard is read from, parsed once when the run was planned.
	URL shards.URL `json:"url"`
}

// Stem is the name the shard's outputs are derived from (OUT/<stem>.parquet).
func (r ShardRef) Stem() string { return r.URL.Stem() }

// Job is one message on the work queue: process one shard of a run. The run's settings
// (models, rule, generation, queue) live in the runs KV bucket, so every worker uses the
// same ones and a job stays small.
type Job struct {
	Run    string     `json:"run"`
	Shard  ShardRef   `json:"shard"`
	Output shards.URL `json:"output"`
	// Retry is 0 for the job submit published and n for the n-th `capfilt retry`; a
	// worker drops a job older than the shard's state says is current.
	Retry int `json:"retry"`
}

// MsgID is the job's JetStream message id: the stream drops a second publish of the same
// id inside its dedup window, so a re-submit (or a repeated retry) is a no-op.
func (j Job) MsgID() string {
	if j.Retry == 0 {
		return MsgID(j.Run, j.Shard.ID)
	}
	return RetryMsgID(j.Run, j.Shard.ID, j.Retry)
}

// EncodeJob is the JSON a job travels as.
func EncodeJob(j Job) ([]byte, error) { return json.Marshal(j) }

// DecodeJob reads a job and checks it names a run and a shard.
func DecodeJob(data []byte) (Job, error) {
	var j Job
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return j, fmt.Errorf("decode job: %w", err)
	}
	switch {
	case ValidateRunName(j.Run) != nil:
		return j, fmt.Errorf("decode job: %w", ValidateRunName(j.Run))
	case j.Shard.ID == "" || j.Shard.URL.IsZero():
		return j, errors.New("decode job: no shard id or url")
	case j.Output.IsZero():
		return j, errors.New("decode job: no output")
	}
	return j, nil
}

// ModelSpec names a model a run uses: a checkpoint path as the workers see it, and the
// tokenizer (empty: the one beside the checkpoint).
type ModelSpec struct {
	Path      string `json:"path"`
	Tokenizer string `json:"tokenizer,omitempty"`
}

// RunSettings is everything that decides a run's output. submit records it in the runs
// bucket; every worker reads it from there, so all shards are made the same way.
type RunSettings struct {
	Run    string     `json:"run"`
	Inputs []string   `json:"inputs"` // the patterns as given
	Output shards.URL `json:"output"`
	Shards int        `json:"shards"` // how many shards the inputs expanded to

	Captioner ModelSpec `json:"captioner"`
	Filter    ModelSpec `json:"filter"`

	Generation spec.Generation `json:"generation"`
	Rule       spec.AcceptRule `json:"rule"`
	// ITMFirstToken is what the filter puts first in the ITM text ("" is enc, BLIP's).
	ITMFirstToken spec.ITMFirstToken `json:"itm_first_token,omitempty"`
	// Queue is how the run's jobs are delivered and retried: its ack wait is its own
	// consumer's (EnsureRunConsumer), and workers nak a failed shard with its backoff and
	// end it after its attempts.
	Queue spec.Queue `json:"queue"`

	Columns   shards.ParquetColumns `json:"columns"`
	MaxPixels int64                 `json:"max_pixels,omitempty"`
	// HumanCaptions says the input captions were written by annotators: they are kept
	// as human captions, unfiltered unless Rule.FilterHuman.
	HumanCaptions bool `json:"human_captions,omitempty"`
	// OutputFormat is what the cleaned shards are written as ("" is Parquet).
	OutputFormat shards.OutputFormat `json:"output_format,omitempty"`
	OmitImages   bool                `json:"omit_images,omitempty"`
	WithRejected bool                `json:"with_rejected,omitempty"`

	// Bookkeeping, not compared between submits.
	Version     string    `json:"version,omitempty"`
	SubmittedAt time.Time `json:"submitted_at"`
}

// Validate checks the typed settings a run records (Problems errors name each one).
func (r RunSettings) Validate() error {
	var errs []error
	for _, err := range []error{ValidateRunName(r.Run), r.Generation.Validate(), r.Rule.Validate(), r.Queue.Validate(),
		r.ITMFirstToken.Validate()} {
		if err != nil {
			errs = append(errs, err)
		}
	}
	if r.MaxPixels < 0 {
		errs = append(errs, spec.Problems{{Setting: "max-pixels", Value: strconv.FormatInt(r.MaxPixels, 10), Reason: "must be 0 (the default limit) or more"}})
	}
	if _, err := shards.ParseOutputFormat(string(r.OutputFormat)); err != nil {
		errs = append(errs, spec.Problems{{Setting: "output-format", Value: strconv.Quote(string(r.OutputFormat)), Reason: "want parquet or wds"}})
	} else if r.Format() == shards.OutputWDS && r.OmitImages {
		errs = append(errs, spec.Problems{{Setting: "output-format", Value: strconv.Quote(string(r.OutputFormat)),
			Reason: "a WebDataset shard needs its images: drop omit-images, or write parquet"}})
	}
	return errors.Join(errs...)
}

// Format is the run's output format: OutputFormat, or Parquet when unset.
func (r RunSettings) Format() shards.OutputFormat {
	if r.OutputFormat == "" {
		return shards.OutputParquet
	}
	return r.OutputFormat
}

// Differences names the settings in which o differs from r ("" when the two would make
// the same output), so that a re-submit with other settings is refused with its reason.
func (r RunSettings) Differences(o RunSettings) string {
	var diffs []string
	for _, f := range []struct {
		name string
		x, y any
	}{
		{"inputs", r.Inputs, o.Inputs}, {"output", r.Output, o.Output}, {"shards", r.Shards, o.Shards},
		{"captioner model", r.Captioner, o.Captioner}, {"filter model", r.Filter, o.Filter},
		{"generation settings", r.Generation, o.Generation}, {"accept rule", r.Rule, o.Rule},
		{"queue settings", r.Queue.WithDefaults(), o.Queue.WithDefaults()},
		{"itm first token", r.ITMFirstToken.OrDefault(), o.ITMFirstToken.OrDefault()},
		{"parquet columns", r.Columns, o.Columns}, {"max pixels", r.MaxPixels, o.MaxPixels},
		{"human captions", r.HumanCaptions, o.HumanCaptions}, {"output format", r.Format(), o.Format()},
		{"omit images", r.OmitImages, o.OmitImages}, {"with rejected", r.WithRejected, o.WithRejected},
	} {
		x, _ := json.Marshal(f.x)
		y, _ := json.Marshal(f.y)
		if !bytes.Equal(x, y) {
			diffs = append(diffs, f.name)
		}
	}
	return strings.Join(diffs, ", ")
}

// State is where a shard is in its life.
type State string

const (
	// Pending: a job is queued and no worker has it yet.
	Pending State = "pending"
	// Running: a worker is processing it.
	Running State = "running"
	// Done: its outputs are published.
	Done State = "done"
	// Failed: the last attempt failed; the job will be delivered again after a backoff.
	Failed State = "failed"
	// Dead: every attempt failed; nothing retries it until `capfilt retry`.
	Dead State = "dead"
)

// Terminal reports whether nothing more will happen to the shard on its own.
func (s State) Terminal() bool { return s == Done || s == Dead }

// Counts account for a shard's samples, at image level: Read = Accepted + Rejected +
// Skipped.
type Counts struct {
	Read     int64 `json:"read"`
	Accepted int64 `json:"accepted"`
	Rejected int64 `json:"rejected"`
	Skipped  int64 `json:"skipped"`
}

// Add adds o.
func (c *Counts) Add(o Counts) {
	c.Read += o.Read
	c.Accepted += o.Accepted
	c.Rejected += o.Rejected
	c.Skipped += o.Skipped
}

// Balanced reports whether every sample read is accounted for.
func (c Counts) Balanced() bool { return c.Read == c.Accepted+c.Rejected+c.Skipped }

// ShardState is a shard's record in the shards bucket.
type ShardState struct {
	Run   string   `json:"run"`
	Shard ShardRef `json:"shard"`
	State State    `json:"state"`
	// Retry is the job generation the state belongs to (Job.Retry).
	Retry int `json:"retry"`
	// Attempts is how many attempts at the current job have begun: a worker counts its
	// own when it starts, so a worker lost mid-shard has used one. A delivery handed back
	// unstarted (NATS unavailable, the worker stopping) uses none, and neither does an
	// attempt a store outage interrupted (Outages).
	Attempts int `json:"attempts"`
	// Outages counts the times an attempt failed because the store was unreachable and
	// was run again once it answered, without using up an attempt.
	Outages   int    `json:"outages,omitempty"`
	Worker    string `json:"worker,omitempty"`
	LastError string `json:"last_error,omitempty"`
	// Damage says where and why a shard that is done broke part-way: every sample before
	// the damage was processed, none after (done with damage). Nil for a whole shard.
	Damage *shards.ShardDamage `json:"damage,omitempty"`

	Counts Counts `json:"counts"`
	// Progress is how many samples the running attempt has read so far.
	Progress int64 `json:"progress,omitempty"`
	// BatchSize is the model batch size the worker used: the largest that fit its device.
	BatchSize int `json:"batch_size,omitempty"`
	// OOMSplits counts batches that ran out of device memory and were split.
	OOMSplits int `json:"oom_splits,omitempty"`

	Output string `json:"output,omitempty"`
	Stats  string `json:"stats,omitempty"`

	SubmittedAt time.Time `json:"submitted_at"`
	StartedAt   time.Time `json:"started_at,omitzero"`
	FinishedAt  time.Time `json:"finished_at,omitzero"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// EncodeState is the JSON a state is stored as.
func EncodeState(s ShardState) ([]byte, error) { return json.Marshal(s) }

// DecodeState reads a stored state.
func DecodeState(data []byte) (ShardState, error) {
	var s ShardState
	if err := json.Unmarshal(data, &s); err != nil {
		return s, fmt.Errorf("decode shard state: %w", err)
	}
	return s, nil
}

// ShardResult is what processing a shard produced.
type ShardResult struct {
	Counts    Counts
	Output    shards.URL // the cleaned Parquet
	Stats     shards.URL // its stats.json
	BatchSize int
	OOMSplits int
	Duration  time.Duration
	Detail    *shards.ShardStats
}
