package coordinator

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/capfilt/capfilt/pipeline"
	"github.com/capfilt/capfilt/shards"
)

// ManifestName is the run manifest's object name under the output prefix.
const ManifestName = "_manifest.json"

// Manifest is OUT/_manifest.json: every shard of the run, its state, counts and error.
type Manifest struct {
	Run      string               `json:"run"`
	Version  string               `json:"version,omitempty"`
	Settings pipeline.RunSettings `json:"settings"`
	Complete bool                 `json:"complete"`
	Done     int                  `json:"done"`
	Dead     int                  `json:"dead"`
	// Damaged counts the done shards that broke part-way (their lines say where).
	Damaged   int             `json:"damaged"`
	Totals    pipeline.Counts `json:"totals"`
	Shards    []ManifestShard `json:"shards"`
	WrittenAt time.Time       `json:"written_at"`
}

// ManifestShard is one shard's line in the manifest.
type ManifestShard struct {
	ID       string          `json:"id"`
	Input    string          `json:"input"`
	State    pipeline.State  `json:"state"`
	Output   string          `json:"output,omitempty"`
	Stats    string          `json:"stats,omitempty"`
	Counts   pipeline.Counts `json:"counts"`
	Attempts int             `json:"attempts"`
	Retry    int             `json:"retry,omitempty"`
	Worker   string          `json:"worker,omitempty"`
	Error    string          `json:"error,omitempty"`
	// Damage, on a done shard, says where and why it broke: it is done with damage, its
	// counts are the samples read before.
	Damage  *shards.ShardDamage `json:"damage,omitempty"`
	Seconds float64             `json:"seconds,omitempty"`
}

// BuildManifest lists every shard of the run in input order. A shard with no state yet is
// listed as pending, with its index as its id.
func BuildManifest(rs pipeline.RunSettings, states map[string]pipeline.ShardState, version string) *Manifest {
	m := &Manifest{Run: rs.Run, Version: version, Settings: rs, WrittenAt: time.Now().UTC()}
	byIndex := map[int]pipeline.ShardState{}
	for _, st := range states {
		byIndex[st.Shard.Index] = st
	}
	for i := range rs.Shards {
		st, ok := byIndex[i]
		if !ok {
			m.Shards = append(m.Shards, ManifestShard{ID: pipeline.ShardID(i, rs.Shards), State: pipeline.Pending})
			continue
		}
		line := ManifestShard{ID: st.Shard.ID, Input: st.Shard.URL.String(), State: st.State, Attempts: st.Attempts,
			Retry: st.Retry, Worker: st.Worker}
		switch st.State {
		case pipeline.Done:
			m.Done++
			line.Output, line.Stats, line.Counts, line.Damage = st.Output, st.Stats, st.Counts, st.Damage
			line.Seconds = st.FinishedAt.Sub(st.StartedAt).Seconds()
			m.Totals.Add(st.Counts)
			if st.Damage != nil {
				m.Damaged++
			}
		case pipeline.Dead, pipeline.Failed:
			line.Error = st.LastError
			if st.State == pipeline.Dead {
				m.Dead++
			}
		}
		m.Shards = append(m.Shards, line)
	}
	sort.SliceStable(m.Shards, func(i, j int) bool { return m.Shards[i].ID < m.Shards[j].ID })
	m.Complete = m.Done+m.Dead == rs.Shards
	return m
}

// WriteManifest writes OUT/_manifest.json from the run's current states, complete or not.
func (c *Coordinator) WriteManifest(ctx context.Context, run string) (*Manifest, error) {
	rs, err := c.q.RunSettings(ctx, run)
	if err != nil {
		return nil, err
	}
	states, err := c.q.RunShardStates(ctx, run)
	if err != nil {
		return nil, err
	}
	return c.writeManifest(ctx, rs, states)
}

func (c *Coordinator) writeManifest(ctx context.Context, rs pipeline.RunSettings, states map[string]pipeline.ShardState) (*Manifest, error) {
	run := rs.Run
	m := BuildManifest(rs, states, c.version)
	out := rs.Output
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode manifest of run %s: %w", run, err)
	}
	if err := c.publishRetrying(ctx, out.Join(ManifestName), append(data, '\n')); err != nil {
		return nil, fmt.Errorf("write manifest: %w", err)
	}
	return m, nil
}

// publishRetrying writes an object as workers write outputs: through a store outage of
// any length (within ctx), waiting longer between tries up to maxStoreWait.
func (c *Coordinator) publishRetrying(ctx context.Context, u shards.URL, data []byte) error {
	wait := 250 * time.Millisecond
	for {
		err := c.writeObject(ctx, u, data)
		if err == nil || !shards.Transient(err) || ctx.Err() != nil {
			return err
		}
		c.log.Warn("store unavailable; trying again", "object", u.String(), "in", wait, "err", err)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait = min(2*wait, maxStoreWait)
	}
}

// maxStoreWait is the longest wait between two tries at an unavailable store.
const maxStoreWait = 30 * time.Second

// FinishRun writes the manifest when every shard of the run is done or dead, and does
// nothing otherwise. Workers call it when a run has no job left in the stream, so that a
// run submitted without --wait still ends with its manifest, and one whose dead shards a
// retry redid ends with a manifest that says so; writing it twice is harmless.
func (c *Coordinator) FinishRun(ctx context.Context, run string) error {
	rs, err := c.q.RunSettings(ctx, run)
	if err != nil {
		return err
	}
	states, err := c.q.RunShardStates(ctx, run)
	if err != nil {
		return err
	}
	if !Summarize(rs, states, time.Now()).Complete {
		return nil
	}
	if _, err := c.writeManifest(ctx, rs, states); err != nil {
		return err
	}
	// The run's consumer goes with its last job; a retry makes it again.
	if n, err := c.q.PendingJobs(ctx, run); err == nil && n == 0 {
		return c.q.DeleteRunConsumer(ctx, run)
	}
	return nil
}

// ReadManifest reads a run's manifest back.
func ReadManifest(ctx context.Context, store shards.Store, out shards.URL) (*Manifest, error) {
	r, err := store.Open(ctx, out.Join(ManifestName))
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var m Manifest
	if err := json.NewDecoder(r).Decode(&m); err != nil {
		return nil, fmt.Errorf("decode %s: %w", out.Join(ManifestName), err)
	}
	return &m, nil
}
