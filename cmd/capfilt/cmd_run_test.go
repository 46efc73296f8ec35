package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/capfilt/capfilt/coordinator"
	"github.com/capfilt/capfilt/shards"
)

// TestMain lets the test binary stand in for capfilt: with CAPFILT_MAIN=1 it runs the
// command line it was given (worker processes of the CLI tests and of bench pipeline).
func TestMain(m *testing.M) {
	if os.Getenv("CAPFILT_MAIN") == "1" {
		os.Exit(execute(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// mustRun runs a command line that must succeed and returns its stdout.
func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errb := runCLI(t, args...)
	if code != 0 {
		t.Fatalf("capfilt %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out, errb)
	}
	return out
}

// The README's first steps, from nothing to cleaned Parquet.
func TestRunCleansSampleShardsFromScratch(t *testing.T) {
	dir := t.TempDir()
	model, in, out, store := filepath.Join(dir, "m"), filepath.Join(dir, "in"), filepath.Join(dir, "out"), filepath.Join(dir, "nats")
	mustRun(t, "model", "random", "--preset", "tiny", "--out", model)
	mustRun(t, "sample-shards", "--out", in, "--shards", "4", "--per-shard", "12")
	args := []string{"run", "--model", model, "--input", in + "/{00000..00003}.tar", "--output", out, "--itm-threshold", "0",
		"--workers", "2", "--store-dir", store, "--threads", "1"}
	stdout := mustRun(t, args...)
	if !strings.Contains(stdout, "4 shards: 4 done, 0 dead") || !strings.Contains(stdout, filepath.Join(out, "_manifest.json")) {
		t.Fatalf("run said:\n%s", stdout)
	}
	m, err := coordinator.ReadManifest(context.Background(), shards.OpenStore(shards.StoreConfig{}), shards.URL{Scheme: shards.SchemeFile, Path: out})
	if err != nil {
		t.Fatal(err)
	}
	if !m.Complete || m.Done != 4 || m.Totals.Read != 48 || m.Totals.Accepted == 0 || m.Totals.Read != m.Totals.Accepted+m.Totals.Rejected+m.Totals.Skipped {
		t.Fatalf("manifest: complete %v, %d done, totals %+v", m.Complete, m.Done, m.Totals)
	}
	before, err := os.Stat(filepath.Join(out, "00002.parquet"))
	if err != nil {
		t.Fatal(err)
	}

	// The same command on the kept store dir finds the run done and redoes nothing.
	stdout = mustRun(t, args...)
	if !strings.Contains(stdout, "4 shards: 4 done") {
		t.Fatalf("second run said:\n%s", stdout)
	}
	after, _ := os.Stat(filepath.Join(out, "00002.parquet"))
	if !after.ModTime().Equal(before.ModTime()) {
		t.Fatal("a finished shard was processed again")
	}
}

func TestModelRandomNeedsAVocabularyBeyondTiny(t *testing.T) {
	code, _, errb := runCLI(t, "model", "random", "--preset", "base", "--out", t.TempDir())
	if code != 2 || !strings.Contains(errb, "--vocab") {
		t.Fatalf("exit %d: %s", code, errb)
	}
}

func TestExampleConfigHoldsOnlyKnownSettings(t *testing.T) {
	code, out, errb := runCLI(t, "config", "--config", filepath.Join("..", "..", "capfilt.example.yaml"))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb)
	}
	for _, name := range []string{"ack-wait", "max-deliver", "nats", "drain-timeout", "store-dir"} {
		if _, src := settingLine(t, out, name); src != "file" {
			t.Errorf("%s comes from %s, not the example file", name, src)
		}
	}
}
