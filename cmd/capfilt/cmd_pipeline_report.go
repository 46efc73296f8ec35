package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/capfilt/capfilt/coordinator"
	"github.com/capfilt/capfilt/pipeline"
	"github.com/capfilt/capfilt/shards"
)

// progressBar shows a run's progress on stderr: a bar of settled shards with done/failed
// counts, images per second and the ETA.
type progressBar struct {
	a   *app
	run string
	bar *progressbar.ProgressBar
}

func (a *app) progress(run string) *progressBar { return &progressBar{a: a, run: run} }

func (p *progressBar) start(shards int) {
	p.bar = progressbar.NewOptions(shards, progressbar.OptionSetWriter(p.a.stderr), progressbar.OptionSetDescription(p.run),
		progressbar.OptionShowCount(), progressbar.OptionSetPredictTime(false), progressbar.OptionThrottle(200*time.Millisecond),
		progressbar.OptionSetWidth(24), progressbar.OptionOnCompletion(func() { fmt.Fprintln(p.a.stderr) }))
}

func (p *progressBar) update(s *coordinator.RunStatus) {
	if p.bar == nil {
		p.start(s.Shards)
	}
	p.bar.Describe(fmt.Sprintf("%s: %d done, %d failed, %.1f img/s, ETA %s", p.run, s.ByState[pipeline.Done],
		s.ByState[pipeline.Failed]+s.ByState[pipeline.Dead], s.ImagesPerSecond, coordinator.FormatETA(s.ETA)))
	p.bar.Set(s.ByState[pipeline.Done] + s.ByState[pipeline.Dead])
}

func (p *progressBar) finish() {
	if p.bar != nil {
		p.bar.Finish()
	}
}

// follow shows a run's progress until it is complete (or ctx ends).
func (a *app) follow(ctx context.Context, coord *coordinator.Coordinator, run string, shards int) (*coordinator.RunStatus, error) {
	bar := a.progress(run)
	bar.start(shards)
	st, err := coord.Watch(ctx, run, 500*time.Millisecond, bar.update)
	if err == nil {
		bar.finish()
	}
	return st, err
}

// finishRun writes a finished run's manifest beside its outputs and reports it.
func (a *app) finishRun(ctx context.Context, coord *coordinator.Coordinator, run, hint string) error {
	m, err := coord.WriteManifest(ctx, run)
	if err != nil {
		return err
	}
	return a.printManifest(m, m.Settings.Output.Join(coordinator.ManifestName).String(), hint)
}

// retryHint says how to re-run a fleet run's dead shards.
func retryHint(run string) string {
	return fmt.Sprintf("capfilt retry --run %s --failed --wait re-runs them", run)
}

// printManifest says how a finished run went; dead shards make it an error, which says
// how to re-run them (hint).
func (a *app) printManifest(m *coordinator.Manifest, where, hint string) error {
	a.printf("run %s: %d shards: %d done, %d dead\n", m.Run, len(m.Shards), m.Done, m.Dead)
	t := m.Totals
	a.printf("images: %d read, %d accepted, %d rejected, %d skipped\n", t.Read, t.Accepted, t.Rejected, t.Skipped)
	for _, s := range m.Shards {
		switch {
		case s.State == pipeline.Dead:
			a.printf("dead %s %s: %s\n", s.ID, s.Input, s.Error)
		case s.Damage != nil:
			a.printf("damaged %s %s: %s\n", s.ID, s.Input, describeDamage(s.Damage))
		}
	}
	a.printf("manifest: %s\n", where)
	if m.Dead > 0 {
		return fmt.Errorf("%d of %d shards are dead (%s)", m.Dead, len(m.Shards), hint)
	}
	return nil
}

// describeDamage says where a shard done with damage broke, for people.
func describeDamage(d *shards.ShardDamage) string {
	where := "at the start"
	switch {
	case d.Member != "":
		where = fmt.Sprintf("in member %q", d.Member)
	case d.After != "":
		where = fmt.Sprintf("after member %q", d.After)
	}
	return fmt.Sprintf("%s %s, %d bytes in; the samples before it were processed (%s)", d.Reason, where, d.TruncatedAt, d.Detail)
}

// printStatus writes a run's status for people.
func printStatus(w io.Writer, s *coordinator.RunStatus) {
	fmt.Fprintf(w, "run %s: %d shards, submitted %s\n", s.Run, s.Shards, s.Settings.SubmittedAt.Local().Format(time.DateTime))
	var parts []string
	for _, st := range []pipeline.State{pipeline.Pending, pipeline.Running, pipeline.Done, pipeline.Failed, pipeline.Dead} {
		parts = append(parts, fmt.Sprintf("%s %d", st, s.ByState[st]))
	}
	if s.Damaged > 0 {
		parts = append(parts, fmt.Sprintf("(%d done with damage)", s.Damaged))
	}
	fmt.Fprintf(w, "  shards   %s\n", strings.Join(parts, ", "))
	i := s.Images
	fmt.Fprintf(w, "  images   %d read: %d accepted, %d rejected, %d skipped", i.Read, i.Accepted, i.Rejected, i.Skipped)
	if s.InFlight > 0 {
		fmt.Fprintf(w, " (+%d read by running shards)", s.InFlight)
	}
	fmt.Fprintln(w)
	if s.Complete {
		fmt.Fprintf(w, "  speed    %.1f images/s; complete\n", s.ImagesPerSecond)
	} else {
		fmt.Fprintf(w, "  speed    %.1f images/s, ETA %s\n", s.ImagesPerSecond, coordinator.FormatETA(s.ETA))
	}
	for _, wk := range s.Workers {
		fmt.Fprintf(w, "  worker   %s: shard %s, %d read, batch size %d", wk.ID, wk.Shard, wk.Progress, wk.BatchSize)
		if wk.OOMSplits > 0 {
			fmt.Fprintf(w, " (%d out-of-memory splits)", wk.OOMSplits)
		}
		fmt.Fprintln(w)
	}
	for _, p := range s.Problems {
		what := "failed (will be retried)"
		if p.State == pipeline.Dead {
			what = "dead"
		}
		fmt.Fprintf(w, "  %s %s after %d attempts: %s\n    %s\n", p.Shard.ID, what, p.Attempts, p.Shard.URL, p.LastError)
	}
}
