package coordinator

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/capfilt/capfilt/pipeline"
)

// RunStatus is a run as NATS sees it at one moment.
type RunStatus struct {
	Run      string                 `json:"run"`
	Settings pipeline.RunSettings   `json:"settings"`
	Shards   int                    `json:"shards"`
	ByState  map[pipeline.State]int `json:"by_state"`
	// Damaged counts the done shards that broke part-way (done with damage).
	Damaged int `json:"damaged"`
	// Images counts the samples of the done shards.
	Images pipeline.Counts `json:"images"`
	// InFlight is how many samples the running attempts have read so far.
	InFlight int64 `json:"in_flight"`
	// ImagesPerSecond is the samples read per second since the first shard started.
	ImagesPerSecond float64 `json:"images_per_second"`
	// ETA estimates the time left from the throughput and the shards' mean size; zero
	// when there is nothing to go by yet.
	ETA        time.Duration         `json:"-"`
	ETASeconds float64               `json:"eta_seconds"`
	Problems   []pipeline.ShardState `json:"problems"` // failed and dead shards
	Workers    []WorkerStatus        `json:"workers"`  // workers with a running shard
	// Complete: every shard is done or dead.
	Complete  bool      `json:"complete"`
	StartedAt time.Time `json:"started_at,omitzero"`
	UpdatedAt time.Time `json:"updated_at,omitzero"`
}

// WorkerStatus is what a running shard says about its worker.
type WorkerStatus struct {
	ID        string `json:"id"`
	Shard     string `json:"shard"`
	Progress  int64  `json:"progress"`
	BatchSize int    `json:"batch_size"`
	OOMSplits int    `json:"oom_splits,omitempty"`
}

// Summarize computes a run's status from its shard states at time now. A shard with no
// state yet (its submit is still publishing) counts as pending.
func Summarize(rs pipeline.RunSettings, states map[string]pipeline.ShardState, now time.Time) *RunStatus {
	s := &RunStatus{Run: rs.Run, Settings: rs, Shards: rs.Shards, ByState: map[pipeline.State]int{}}
	terminal := 0
	var doneSecs float64
	for _, st := range states {
		s.ByState[st.State]++
		if st.State.Terminal() {
			terminal++
		}
		if !st.StartedAt.IsZero() && (s.StartedAt.IsZero() || st.StartedAt.Before(s.StartedAt)) {
			s.StartedAt = st.StartedAt
		}
		if st.UpdatedAt.After(s.UpdatedAt) {
			s.UpdatedAt = st.UpdatedAt
		}
		switch st.State {
		case pipeline.Done:
			s.Images.Add(st.Counts)
			if st.Damage != nil {
				s.Damaged++
			}
			doneSecs += st.FinishedAt.Sub(st.StartedAt).Seconds()
		case pipeline.Running:
			s.InFlight += st.Progress
			s.Workers = append(s.Workers, WorkerStatus{ID: st.Worker, Shard: st.Shard.ID, Progress: st.Progress,
				BatchSize: st.BatchSize, OOMSplits: st.OOMSplits})
		case pipeline.Failed, pipeline.Dead:
			s.Problems = append(s.Problems, st)
		}
	}
	if missing := rs.Shards - len(states); missing > 0 {
		s.ByState[pipeline.Pending] += missing
	}
	s.Complete = rs.Shards > 0 && terminal == rs.Shards
	sort.Slice(s.Problems, func(i, j int) bool { return s.Problems[i].Shard.Index < s.Problems[j].Shard.Index })
	sort.Slice(s.Workers, func(i, j int) bool { return s.Workers[i].ID < s.Workers[j].ID })

	end := now
	if s.Complete {
		end = s.UpdatedAt
	}
	if elapsed := end.Sub(s.StartedAt).Seconds(); !s.StartedAt.IsZero() && elapsed > 0 {
		s.ImagesPerSecond = float64(s.Images.Read+s.InFlight) / elapsed
	}
	done := s.ByState[pipeline.Done]
	if left := rs.Shards - terminal; left > 0 && done > 0 && s.ImagesPerSecond > 0 {
		perShard := float64(s.Images.Read) / float64(done)
		remaining := max(perShard*float64(left)-float64(s.InFlight), 0)
		s.ETA = time.Duration(remaining / s.ImagesPerSecond * float64(time.Second))
		s.ETASeconds = s.ETA.Seconds()
	}
	return s
}

// Status reads a run's settings and shard states.
func (c *Coordinator) Status(ctx context.Context, run string) (*RunStatus, error) {
	rs, err := c.q.RunSettings(ctx, run)
	if err != nil {
		if errors.Is(err, pipeline.ErrNotFound) {
			return nil, invalidf("no run %q on this NATS server", run)
		}
		return nil, err
	}
	states, err := c.q.RunShardStates(ctx, run)
	if err != nil {
		return nil, err
	}
	return Summarize(rs, states, time.Now()), nil
}

// Watch reports the run's status every interval (and once more at the end) until the run
// is complete or ctx ends. It polls, so a NATS restart only pauses the reports; a run so
// large that reading it takes a while is polled less often.
func (c *Coordinator) Watch(ctx context.Context, run string, every time.Duration, report func(*RunStatus)) (*RunStatus, error) {
	if every <= 0 {
		every = time.Second
	}
	var last *RunStatus
	for {
		began := time.Now()
		s, err := c.Status(ctx, run)
		// Reading a run of many shards takes a while: poll at most a tenth of the time.
		wait := max(every, 9*time.Since(began))
		switch {
		case err == nil:
			last = s
			report(s)
			if s.Complete {
				return s, nil
			}
		case ctx.Err() != nil:
			return last, ctx.Err()
		default:
			var inv *InvalidError
			if errors.As(err, &inv) {
				return last, err
			}
			c.log.Warn("status of run unavailable; retrying", "run", run, "err", err)
		}
		select {
		case <-ctx.Done():
			return last, ctx.Err()
		case <-time.After(wait):
		}
	}
}

// FormatETA prints an estimate for people: "3m20s", or "?" with nothing to go by.
func FormatETA(d time.Duration) string {
	if d <= 0 {
		return "?"
	}
	if d > time.Minute {
		d = d.Round(time.Second)
	} else {
		d = d.Round(100 * time.Millisecond)
	}
	return fmt.Sprint(d)
}
