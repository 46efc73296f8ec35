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
		passiveOpenMP()
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

// The first run's rows stay: a second run into its output, or a run into a folder of
// other files (an img2dataset download), is refused with exit 2 and touches nothing.
func TestASecondRunIntoAnOutputIsRefused(t *testing.T) {
	dir := t.TempDir()
	model, out := filepath.Join(dir, "m"), filepath.Join(dir, "out")
	mustRun(t, "model", "random", "--preset", "tiny", "--out", model)
	mustRun(t, "sample-shards", "--out", filepath.Join(dir, "a"), "--shards", "2", "--per-shard", "4")
	mustRun(t, "sample-shards", "--out", filepath.Join(dir, "b"), "--shards", "2", "--per-shard", "4", "--scene-seed", "9")
	run := func(input, output string) (int, string) {
		code, _, errb := runCLI(t, "run", "--model", model, "--input", input, "--output", output, "--itm-threshold", "0", "--threads", "1")
		return code, errb
	}
	if code, errb := run(filepath.Join(dir, "a", "*.tar"), out); code != 0 {
		t.Fatalf("first run: exit %d: %s", code, errb)
	}
	before, err := os.Stat(filepath.Join(out, "00000.parquet"))
	if err != nil {
		t.Fatal(err)
	}
	// The same output folder, so the same default run name: other inputs make it another run.
	code, errb := run(filepath.Join(dir, "b", "*.tar"), out)
	if code != 2 || !strings.Contains(errb, out) || !strings.Contains(errb, "other inputs") || !strings.Contains(errb, "--overwrite") {
		t.Fatalf("second run into the output: exit %d: %s", code, errb)
	}
	if after, _ := os.Stat(filepath.Join(out, "00000.parquet")); !after.ModTime().Equal(before.ModTime()) {
		t.Fatal("the first run's output was rewritten")
	}
	m, err := coordinator.ReadManifest(context.Background(), shards.OpenStore(shards.StoreConfig{}), shards.URL{Scheme: shards.SchemeFile, Path: out})
	if err != nil || m.Totals.Read != 8 || m.Settings.Inputs[0] != filepath.Join(dir, "a", "*.tar") {
		t.Fatalf("the first run's manifest: %+v (%v)", m, err)
	}

	code, errb = run(filepath.Join(dir, "b", "*.tar"), filepath.Join(dir, "b"))
	if code != 2 || !strings.Contains(errb, "00000.tar") || !strings.Contains(errb, "capfilt did not write") {
		t.Fatalf("a run into its own input folder: exit %d: %s", code, errb)
	}
}

// The hint for dead shards names a command that works with the embedded server: the
// same run on its --store-dir with --retry-dead re-runs them, and the manifest says so.
func TestRunRetriesItsDeadShardsFromItsStoreDir(t *testing.T) {
	dir := t.TempDir()
	model, in, out, store := filepath.Join(dir, "m"), filepath.Join(dir, "in"), filepath.Join(dir, "out"), filepath.Join(dir, "nats")
	mustRun(t, "model", "random", "--preset", "tiny", "--out", model)
	mustRun(t, "sample-shards", "--out", in, "--shards", "2", "--per-shard", "4")
	good, _ := os.ReadFile(filepath.Join(in, "00001.tar"))
	os.WriteFile(filepath.Join(in, "00001.tar"), []byte(strings.Repeat("not a tar ", 100)), 0o644)
	args := []string{"run", "--model", model, "--input", in + "/*.tar", "--output", out, "--itm-threshold", "0",
		"--store-dir", store, "--threads", "1"}
	code, stdout, errb := runCLI(t, args...)
	if code != 1 || !strings.Contains(stdout, "2 shards: 1 done, 1 dead") || !strings.Contains(errb, "--retry-dead") ||
		!strings.Contains(errb, store) {
		t.Fatalf("run with a poison shard: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, errb)
	}
	os.WriteFile(filepath.Join(in, "00001.tar"), good, 0o644)
	stdout = mustRun(t, append(args, "--retry-dead")...)
	if !strings.Contains(stdout, "re-ran 1 dead shards") || !strings.Contains(stdout, "2 shards: 2 done, 0 dead") {
		t.Fatalf("run --retry-dead said:\n%s", stdout)
	}
	m, err := coordinator.ReadManifest(context.Background(), shards.OpenStore(shards.StoreConfig{}), shards.URL{Scheme: shards.SchemeFile, Path: out})
	if err != nil || m.Dead != 0 || m.Done != 2 || m.Shards[1].Retry != 1 || m.Totals.Read != 8 {
		t.Fatalf("manifest after --retry-dead: %+v (%v)", m, err)
	}
	if code, _, errb := runCLI(t, "run", "--model", model, "--input", in+"/*.tar", "--output", out, "--retry-dead"); code != 2 ||
		!strings.Contains(errb, "--store-dir") {
		t.Fatalf("--retry-dead without a store dir: exit %d: %s", code, errb)
	}
}
