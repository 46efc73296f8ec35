package localrun_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/capfilt/capfilt/coordinator"
	"github.com/capfilt/capfilt/internal/testutil/tinyblip"
	"github.com/capfilt/capfilt/localrun"
	"github.com/capfilt/capfilt/pipeline/spec"
	"github.com/capfilt/capfilt/synth"
	"github.com/capfilt/capfilt/torch"
	"github.com/capfilt/capfilt/workers"
)

func TestRunReportsProgressAndEndsWithTheManifest(t *testing.T) {
	torch.SetNumThreads(1)
	dir := t.TempDir()
	in := filepath.Join(dir, "in")
	if _, err := synth.WriteSampleShards(in, 2, synth.SampleOptions{PerShard: 4, CorruptRate: 0.25, Seed: 4}); err != nil {
		t.Fatal(err)
	}
	rs := tinyblip.RunSettings(t, "local", []string{filepath.Join(in, "*.tar")}, filepath.Join(dir, "out"), tinyblip.ModelDir(t, 2))
	rs.Rule = spec.AcceptRule{Web: spec.ITMOnly(0), Synthetic: spec.ITMOnly(0)}
	var started, reports int
	cfg := localrun.Config{Settings: rs, Workers: 2, Worker: workers.Config{BatchSize: 2, DecodeWorkers: 1},
		StoreDir: filepath.Join(dir, "nats"), Version: "test",
		OnStart:    func(url string, sum *coordinator.SubmitSummary) { started += len(sum.Shards) },
		OnProgress: func(*coordinator.RunStatus) { reports++ }}
	res, err := localrun.Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	m := res.Manifest
	if started != 2 || reports == 0 || !m.Complete || m.Done != 2 || m.Totals.Read != 8 || !m.Totals.Balanced() || m.Totals.Accepted == 0 {
		t.Fatalf("started %d, %d reports, manifest %+v", started, reports, m)
	}
	if _, err := os.Stat(res.ManifestURL.Path); err != nil || filepath.Dir(res.ManifestURL.Path) != filepath.Join(dir, "out") {
		t.Fatalf("manifest at %s: %v", res.ManifestURL, err)
	}
	// Again on the same store dir: the run is found done and nothing is published.
	res, err = localrun.Run(context.Background(), cfg)
	if err != nil || !res.Submit.Resubmit || res.Submit.Published != 0 || res.Manifest.Done != 2 {
		t.Fatalf("second run: %+v (%v)", res, err)
	}
}

func TestRunThatCannotLoadItsModelDoesNothing(t *testing.T) {
	dir := t.TempDir()
	rs := tinyblip.RunSettings(t, "broken", []string{filepath.Join(dir, "*.tar")}, filepath.Join(dir, "out"), filepath.Join(dir, "no-model"))
	_, err := localrun.Run(context.Background(), localrun.Config{Settings: rs})
	var inv *coordinator.InvalidError
	if !errors.As(err, &inv) {
		t.Fatalf("err %v, want an InvalidError", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "out")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the output was touched: %v", err)
	}
}
