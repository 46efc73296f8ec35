package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// scripts/gpu-check.sh runs end to end on the CPU with --dry-run, up to its first CUDA
// call: the binaries are found, the shim loads, the golden tests run from test binaries
// away from their source tree, model forward, bench model, sample shards and two capfilt
// runs go through, and the results file says so. (Its Python parts are left out here:
// make test runs no Python; `scripts/gpu-check.sh --dry-run` by hand runs them too.)
func TestGPUCheckScriptDryRunsOnTheCPU(t *testing.T) {
	if testing.Short() {
		t.Skip("links two test binaries and runs the script's steps")
	}
	for _, tool := range []string{"bash", "xz", "timeout", "awk"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("no %s: %v", tool, err)
		}
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	art := t.TempDir()
	for _, pkg := range []string{"captioner", "filter"} {
		c := exec.Command("go", "test", "-c", "-o", filepath.Join(art, pkg+".test"), "./"+pkg)
		c.Dir = root
		if out, err := c.CombinedOutput(); err != nil {
			t.Fatalf("go test -c ./%s: %v\n%s", pkg, err, out)
		}
	}
	results := filepath.Join(t.TempDir(), "results.txt")
	cmd := exec.Command("bash", "scripts/gpu-check.sh", "--dry-run", "--artifacts", art, "--results", results)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GPU_CHECK_CAPFILT="+os.Args[0], "CAPFILT_MAIN=1", // this binary acts as capfilt
		"GPU_CHECK_NO_PYTHON=1", "BUDGET_S=400")
	out, err := cmd.CombinedOutput()
	text, _ := os.ReadFile(results)
	if err != nil {
		t.Fatalf("gpu-check --dry-run: %v\n%s\nresults:\n%s", err, out, text)
	}
	for _, want := range []string{
		"DRY RUN", "-- capfilt version: ok", "-- captioner goldens on cpu: ok", "-- filter goldens on cpu: ok", "--- PASS: TestITMFirstTokenMatchesTheReferenceBothWays",
		"--- PASS: TestGreedyAndBeamEqualTheReferenceTokenForToken/tiny-gen", "-- forward tiny float32 vs reference (atol 1e-4): ok",
		"-- caption + filter, tiny, float32, batch 4: ok", "-- capfilt run --device cpu (float32): ok",
		"-- out of memory: batch 512", "ALL CHECKS PASSED",
	} {
		if !strings.Contains(string(text), want) {
			t.Errorf("results lack %q", want)
		}
	}
	if t.Failed() {
		t.Logf("results:\n%s", text)
	}
}
