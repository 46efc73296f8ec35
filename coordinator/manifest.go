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
	Run       string               `json:"run"`
	Version   string               `json:"version,omitempty"`
	Settings  pipeline.RunSettings `json:"settings"`
	Complete  bool                 `json:"complete"`
	Done      int                  `json:"done"`
	Dead      int                  `json:"dead"`
	Totals    pipeline.Counts      `json:"totals"`
	Shards    []ManifestShard      `json:"shards"`
	WrittenAt time.Time            `json:"written_at"`
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
	Seconds  float64         `json:"seconds,omitempty"`
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
			line.Output, line.Stats, line.Counts = st.Output, st.Stats, st.Counts
			line.Seconds = st.FinishedAt.Sub(st.StartedAt).Seconds()
			m.Totals.Add(st.Counts)
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
	u := out.Join(ManifestName)
	w, err := c.store.Create(ctx, u)
	if err != nil {
		return nil, fmt.Errorf("write manifest: %w", err)
	}
	defer w.Abort()
	if _, err := w.Write(append(data, '\n')); err != nil {
		return nil, fmt.Errorf("write manifest: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("write manifest: %w", err)
	}
	return m, nil
}

// FinishRun writes the manifest when every shard of the run is done or dead, and does
// nothing otherwise. Workers call it when a run has no job left in the stream, so that a
// run submitted without --wait still ends with its manifest; writing it twice is harmless.
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
	_, err = c.writeManifest(ctx, rs, states)
	return err
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
