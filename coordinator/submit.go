package coordinator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/capfilt/capfilt/pipeline"
	"github.com/capfilt/capfilt/shards"
)

// Coordinator plans runs, publishes their jobs and reads back what the workers did.
// Everything it knows lives in NATS, so any number of them, on any machine, agree.
type Coordinator struct {
	q       *pipeline.Queue
	store   shards.Store
	log     *slog.Logger
	version string
}

// Config configures a Coordinator.
type Config struct {
	Store   shards.Store // where inputs are listed and the manifest is written
	Log     *slog.Logger // default: discard
	Version string       // capfilt's version, recorded in run settings and manifests
}

// New makes a coordinator over an opened queue.
func New(q *pipeline.Queue, cfg Config) *Coordinator {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Store == nil {
		cfg.Store = shards.OpenStore(shards.StoreConfig{})
	}
	return &Coordinator{q: q, store: cfg.Store, log: cfg.Log, version: cfg.Version}
}

// InvalidError is a problem with what was asked (a missing input, an unwritable output, a
// run name taken by other settings): nothing was published.
type InvalidError struct{ Err error }

func (e *InvalidError) Error() string { return e.Err.Error() }
func (e *InvalidError) Unwrap() error { return e.Err }

func invalidf(format string, args ...any) error {
	return &InvalidError{Err: fmt.Errorf(format, args...)}
}

// SubmitSummary says what a submit did.
type SubmitSummary struct {
	Run       string
	Shards    []pipeline.ShardRef
	Published int  // jobs published now
	Known     int  // shards an earlier submit of the same run already published
	Resubmit  bool // the run existed before this submit
}

// statConcurrency bounds the input checks in flight (HEADs on S3).
const statConcurrency = 16

// Plan expands the input patterns into the run's shards, in order, and checks that each
// exists, has a known format and writes outputs no other shard writes.
func (c *Coordinator) Plan(ctx context.Context, inputs []string) ([]pipeline.ShardRef, error) {
	refs, _, err := c.plan(ctx, inputs)
	return refs, err
}

// plan is Plan, and the first shard of each pattern.
func (c *Coordinator) plan(ctx context.Context, inputs []string) ([]pipeline.ShardRef, []shards.URL, error) {
	if len(inputs) == 0 {
		return nil, nil, invalidf("no input given")
	}
	var urls, firsts []shards.URL
	seen := map[shards.URL]bool{}
	stems := map[string]shards.URL{}
	for _, pattern := range inputs {
		us, err := shards.Expand(ctx, c.store, pattern)
		if err != nil {
			return nil, nil, invalidf("input %s: %v", pattern, err)
		}
		first := true // each pattern's first shard not already planned is opened
		for _, u := range us {
			u = absolute(u)
			if seen[u] {
				continue
			}
			if first {
				firsts, first = append(firsts, u), false
			}
			seen[u] = true
			if shards.ShardFormat(u) == "" {
				return nil, nil, invalidf("input shard %s: want a WebDataset tar (.tar, .tar.gz, .tgz) or a .parquet shard", u)
			}
			if prev, dup := stems[u.Stem()]; dup {
				return nil, nil, invalidf("input shards %s and %s would both write %s.parquet (%[3]s.tar with --output-format wds)", prev, u, u.Stem())
			}
			stems[u.Stem()] = u
			urls = append(urls, u)
		}
	}
	if len(urls) == 0 {
		return nil, nil, invalidf("input %v names no shard", inputs)
	}
	if err := c.checkExist(ctx, urls); err != nil {
		return nil, nil, err
	}
	refs := make([]pipeline.ShardRef, len(urls))
	for i, u := range urls {
		refs[i] = pipeline.ShardRef{Index: i, ID: pipeline.ShardID(i, len(urls)), URL: u}
	}
	return refs, firsts, nil
}

func (c *Coordinator) checkExist(ctx context.Context, urls []shards.URL) error {
	errs := make([]error, len(urls))
	sem := make(chan struct{}, statConcurrency)
	var wg sync.WaitGroup
	for i, u := range urls {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if _, err := c.store.Stat(ctx, u); err != nil {
				errs[i] = err
			}
		}()
	}
	wg.Wait()
	var first error
	missing := 0
	for _, err := range errs {
		if err != nil {
			if first == nil {
				first = err
			}
			missing++
		}
	}
	switch {
	case missing == 1:
		return invalidf("input shard: %v", first)
	case missing > 1:
		return invalidf("input shards: %v (and %d more)", first, missing-1)
	}
	return nil
}

// checkReadable opens each shard, so that input no worker could read (not a tar, a
// Parquet file without an image column) is refused before any job exists. A tar's first
// sample is read (its first members); a Parquet file's footer says enough, and its first
// row group may be hundreds of megabytes. A shard damaged part-way, or empty, is fine:
// workers process what it holds.
func (c *Coordinator) checkReadable(ctx context.Context, urls []shards.URL, cols shards.ParquetColumns) error {
	for _, u := range urls {
		r, err := shards.OpenShard(ctx, c.store, u, shards.ShardOptions{Columns: cols})
		if err == nil {
			if shards.ShardFormat(u) == shards.FormatTar {
				_, err = r.Next()
			}
			r.Close()
		}
		var damage *shards.DamageError
		switch {
		case err == nil, errors.Is(err, io.EOF), errors.As(err, &damage):
		case shards.Transient(err):
			return fmt.Errorf("input shard %s: %w", u, err)
		default:
			return invalidf("input shard %s cannot be processed: %v", u, err)
		}
	}
	return nil
}

// checkWritable writes and deletes a small object under out, so that a run that could
// never publish anything fails at submit, not on every worker.
func (c *Coordinator) checkWritable(ctx context.Context, out shards.URL, run string) error {
	probe := out.Join(".capfilt-write-check-" + run)
	w, err := c.store.Create(ctx, probe)
	if err != nil {
		return invalidf("output %s is not writable: %v", out, err)
	}
	defer w.Abort()
	if _, err := w.Write([]byte("capfilt\n")); err != nil {
		return invalidf("output %s is not writable: %v", out, err)
	}
	if err := w.Close(); err != nil {
		return invalidf("output %s is not writable: %v", out, err)
	}
	if err := c.store.Delete(ctx, probe); err != nil {
		c.log.Warn("could not delete the write check object", "object", probe.String(), "err", err)
	}
	return nil
}

// OutputURL parses and normalises an output prefix as a user wrote it.
func OutputURL(s string) (shards.URL, error) {
	u, err := shards.ParseURL(s)
	if err != nil {
		return u, invalidf("output %s: %v", s, err)
	}
	return absolute(u), nil
}

// absolute makes a local path absolute: workers may run in another directory.
func absolute(u shards.URL) shards.URL {
	if u.Scheme == shards.SchemeFile {
		if abs, err := filepath.Abs(u.Path); err == nil {
			if strings.HasSuffix(u.Path, "/") && abs != "/" {
				abs += "/"
			}
			u.Path = abs
		}
	}
	return u
}

// SubmitOption changes what Submit does.
type SubmitOption func(*submitOptions)

type submitOptions struct{ overwrite bool }

// Overwrite lets a run take over an output prefix that another run claimed or that holds
// files capfilt did not write: the run's outputs replace files of the same name.
func Overwrite() SubmitOption { return func(o *submitOptions) { o.overwrite = true } }

// Submit claims the run's output prefix, records its settings and publishes one job per
// shard. Submitting a run again with the same settings publishes only the jobs of shards
// that have none yet (none, when the first submit finished); other settings under the
// same name are refused, and so is an output that belongs to another run (see Claim).
func (c *Coordinator) Submit(ctx context.Context, rs pipeline.RunSettings, opts ...SubmitOption) (*SubmitSummary, error) {
	var o submitOptions
	for _, opt := range opts {
		opt(&o)
	}
	rs.Queue = rs.Queue.WithDefaults()
	if err := rs.Validate(); err != nil {
		return nil, &InvalidError{Err: err}
	}
	if rs.Output.IsZero() {
		return nil, invalidf("no output given")
	}
	rs.Output = absolute(rs.Output)
	out := rs.Output
	refs, firsts, err := c.plan(ctx, rs.Inputs)
	if err != nil {
		return nil, err
	}
	if err := c.checkReadable(ctx, firsts, rs.Columns); err != nil {
		return nil, err
	}
	rs.Shards = len(refs)
	if rs.SubmittedAt.IsZero() {
		rs.SubmittedAt = time.Now().UTC()
	}
	if err := c.checkWritable(ctx, out, rs.Run); err != nil {
		return nil, err
	}
	// A run name taken by other settings is refused before the output is touched.
	if prev, err := c.q.RunSettings(ctx, rs.Run); err == nil {
		if diff := prev.Differences(rs); diff != "" {
			return nil, invalidf("run %s was submitted before with other %s; use another run name", rs.Run, diff)
		}
	} else if !errors.Is(err, pipeline.ErrNotFound) {
		return nil, err
	}
	if err := c.claimOutput(ctx, rs, o.overwrite); err != nil {
		return nil, err
	}
	sum := &SubmitSummary{Run: rs.Run, Shards: refs}
	recorded, err := c.recordSettings(ctx, rs)
	if err != nil {
		return nil, err
	}
	sum.Resubmit = recorded.SubmittedAt != rs.SubmittedAt
	states, err := c.q.RunShardStates(ctx, rs.Run)
	if err != nil {
		return nil, err
	}
	var todo []pipeline.ShardRef
	for _, r := range refs {
		if _, known := states[r.ID]; known {
			sum.Known++
			continue
		}
		todo = append(todo, r)
	}
	if len(todo) > 0 {
		// Before the jobs: a worker that sees them finds the run's consumer there.
		if err := c.q.EnsureRunConsumer(ctx, rs.Run, recorded.Queue); err != nil {
			return nil, err
		}
	}
	n, err := c.publish(ctx, recorded, todo)
	sum.Published = n
	if err != nil {
		return sum, err
	}
	sum.Known += len(todo) - n // published by an earlier submit whose states were not stored
	return sum, nil
}

// recordSettings stores rs as the run's settings, or checks that the stored ones match.
func (c *Coordinator) recordSettings(ctx context.Context, rs pipeline.RunSettings) (pipeline.RunSettings, error) {
	if rs.Version == "" {
		rs.Version = c.version
	}
	for range 3 {
		prev, err := c.q.RunSettings(ctx, rs.Run)
		switch {
		case err == nil:
			if diff := prev.Differences(rs); diff != "" {
				return prev, invalidf("run %s was submitted before with other %s; use another run name", rs.Run, diff)
			}
			return prev, nil
		case !errors.Is(err, pipeline.ErrNotFound):
			return rs, err
		}
		if err := c.q.CreateRunSettings(ctx, rs); err == nil {
			return rs, nil
		} else if !errors.Is(err, pipeline.ErrExists) {
			return rs, err
		}
		// Another submit of the same run got there first: compare with its settings.
	}
	return rs, fmt.Errorf("record settings of run %s: the stored settings keep changing", rs.Run)
}

// publish sends the jobs of refs and records them as pending. It returns how many the
// stream took as new (a message id it had seen inside its dedup window is not).
func (c *Coordinator) publish(ctx context.Context, rs pipeline.RunSettings, refs []pipeline.ShardRef) (int, error) {
	jobs := make([]pipeline.Job, len(refs))
	for i, r := range refs {
		jobs[i] = jobFor(rs, r, 0)
	}
	fresh, perr := c.q.PublishJobs(ctx, jobs)
	published := 0
	now := time.Now().UTC()
	for i, isNew := range fresh {
		if isNew {
			published++
		}
		st := pipeline.ShardState{Run: rs.Run, Shard: refs[i], State: pipeline.Pending, SubmittedAt: now}
		// A worker that already took the job has written a newer state: keep it.
		if err := c.q.CreateShardState(ctx, st); err != nil && !errors.Is(err, pipeline.ErrExists) {
			return published, fmt.Errorf("record shard %s as pending: %w", refs[i].URL, err)
		}
	}
	return published, perr
}

func jobFor(rs pipeline.RunSettings, r pipeline.ShardRef, retry int) pipeline.Job {
	return pipeline.Job{Run: rs.Run, Shard: r, Output: rs.Output, Retry: retry}
}
