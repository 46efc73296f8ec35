package coordinator

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/capfilt/capfilt/pipeline"
)

// RetryRequest names the shards of a run to process again.
type RetryRequest struct {
	Run string
	// Dead re-enqueues every dead shard.
	Dead bool
	// Shards are shard ids, input URLs or output stems; each must be dead or done (a
	// pending, running or failed shard already has a job in the queue).
	Shards []string
}

// Retry publishes a new job for each chosen shard and marks it pending again. A work-queue
// stream deleted the old job when it was terminated or acked, so each retry is a new
// message with its own id (<run>/<shard>/retry-<n>); a retry repeated before any worker
// took it is dropped by the stream's dedup window.
func (c *Coordinator) Retry(ctx context.Context, req RetryRequest) ([]pipeline.ShardRef, error) {
	if !req.Dead && len(req.Shards) == 0 {
		return nil, invalidf("nothing to retry: name shards or ask for the dead ones")
	}
	rs, err := c.q.RunSettings(ctx, req.Run)
	if err != nil {
		if errors.Is(err, pipeline.ErrNotFound) {
			return nil, invalidf("no run %q on this NATS server", req.Run)
		}
		return nil, err
	}
	states, err := c.q.RunShardStates(ctx, req.Run)
	if err != nil {
		return nil, err
	}
	chosen := map[string]pipeline.ShardState{}
	if req.Dead {
		for id, st := range states {
			if st.State == pipeline.Dead {
				chosen[id] = st
			}
		}
	}
	for _, name := range req.Shards {
		st, ok := findShard(states, name)
		if !ok {
			return nil, invalidf("run %s has no shard %q (give its id, input URL or output stem)", req.Run, name)
		}
		if st.State != pipeline.Dead && st.State != pipeline.Done {
			return nil, invalidf("shard %s of run %s is %s: it already has a job in the queue", st.Shard.ID, req.Run, st.State)
		}
		chosen[st.Shard.ID] = st
	}
	ids := make([]string, 0, len(chosen))
	for id := range chosen {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	if len(ids) > 0 {
		// A finished run's consumer is gone (FinishRun); its new jobs need one.
		if err := c.q.EnsureRunConsumer(ctx, rs.Run, rs.Queue); err != nil {
			return nil, err
		}
	}
	var out []pipeline.ShardRef
	for _, id := range ids {
		if err := c.retryShard(ctx, rs, chosen[id]); err != nil {
			return out, err
		}
		out = append(out, chosen[id].Shard)
	}
	return out, nil
}

// findShard finds a shard of the run by its id, input URL, stem, or output file name
// (STEM.parquet, or STEM.tar for --output-format wds).
func findShard(states map[string]pipeline.ShardState, name string) (pipeline.ShardState, bool) {
	if st, ok := states[name]; ok {
		return st, true
	}
	for _, st := range states {
		if st.Shard.URL.String() == name || st.Shard.Stem() == name || st.Shard.Stem()+".parquet" == name || st.Shard.Stem()+".tar" == name {
			return st, true
		}
	}
	return pipeline.ShardState{}, false
}

// retryShard publishes the next generation of a shard's job, then records it as pending.
// Publishing first means a crash in between leaves a job a worker will run (it accepts a
// job newer than the state), never a pending state with no job behind it.
func (c *Coordinator) retryShard(ctx context.Context, rs pipeline.RunSettings, st pipeline.ShardState) error {
	// The revision from before the publish: a worker that takes the new job at once
	// writes a newer state, which the pending state below must not overwrite.
	cur, rev, err := c.q.ShardState(ctx, rs.Run, st.Shard.ID)
	if err != nil {
		return err
	}
	if cur.State != st.State || cur.Retry != st.Retry {
		return invalidf("shard %s of run %s changed while being retried (now %s)", st.Shard.ID, rs.Run, cur.State)
	}
	n := cur.Retry + 1
	if _, err := c.q.PublishJob(ctx, jobFor(rs, st.Shard, n)); err != nil {
		return fmt.Errorf("publish retry %d of shard %s: %w", n, st.Shard.ID, err)
	}
	next := pipeline.ShardState{Run: rs.Run, Shard: st.Shard, State: pipeline.Pending, Retry: n,
		LastError: st.LastError, SubmittedAt: time.Now().UTC()}
	if err := c.q.UpdateShardState(ctx, next, rev); err != nil {
		// A worker has already taken the new job and written a newer state.
		c.log.Debug("retry state not stored; a worker was faster", "shard", st.Shard.ID, "err", err)
	}
	return nil
}
