package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/capfilt/capfilt/demo"
)

// capfiltCommand is this test binary run as capfilt (TestMain) with args.
func capfiltCommand(args ...string) (*exec.Cmd, *bytes.Buffer, *bytes.Buffer) {
	c := exec.Command(os.Args[0], args...)
	c.Env = append(os.Environ(), testMainEnv+"=1")
	var stdout, stderr bytes.Buffer
	c.Stdout, c.Stderr = &stdout, &stderr
	return c, &stdout, &stderr
}

// capfilt demo --quick as a user runs it, two seeds in two child processes: the table
// with both seeds, the stage lines of both children, the report, table and each seed's
// outcome in the workdir.
func TestDemoCommandRunsSeedsInChildProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("trains 32 tiny models")
	}
	dir := filepath.Join(t.TempDir(), "demo")
	c, stdout, stderr := capfiltCommand("demo", "--quick", "--seeds", "3,4", "--parallel", "2", "--workdir", dir)
	if err := c.Run(); err != nil {
		t.Fatalf("capfilt demo: %v\n%s\n%s", err, stdout, stderr)
	}
	out := stdout.String()
	for _, want := range []string{"recipe quick, seed(s) 3 4 (mean over 2)", "noisy web", "+C+F beam", "filter on the injected noise",
		"stage times (seconds):", "seed 4   evaluate +C+F beam", "report: " + filepath.Join(dir, "report.html")} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
	for _, want := range []string{"[seed 3 17/17] evaluate +C+F beam: ", "[seed 4  1/17] synth"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	var res demo.Result
	data, err := os.ReadFile(filepath.Join(dir, "demo.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Seeds) != 2 || res.Seeds[0].Seed != 3 || res.Seeds[1].Seed != 4 || len(res.Table.Rows) != len(demo.Rows) {
		t.Fatalf("demo.json: %d seeds, %d rows", len(res.Seeds), len(res.Table.Rows))
	}
	for _, row := range res.Table.Rows {
		if len(row.PerSeed) != 2 {
			t.Errorf("row %s has %d seeds", row.Name, len(row.PerSeed))
		}
	}
	for _, f := range []string{"report.html", "table.txt", "seed-3/seed.json", "seed-4/seed.json"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Error(err)
		}
	}
	table, err := os.ReadFile(filepath.Join(dir, "table.txt"))
	if err != nil || !strings.Contains(string(table), "+C+F beam") || !strings.Contains(out, string(table)) {
		t.Errorf("table.txt (%v) is not the printed table:\n%s", err, table)
	}
}

func TestDemoCommandRefusesBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--parallel", "0"}, "parallel (from --parallel): 0: must be at least 1"},
		{[]string{"--workers", "0"}, "workers (from --workers): 0: must be at least 1"},
		{[]string{"--workdir", ""}, "no workdir given (--workdir)"},
	} {
		c, _, stderr := capfiltCommand(append([]string{"demo", "--quick"}, tc.args...)...)
		err := c.Run()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("demo %v: %v, stderr %q; want exit 2 saying %q", tc.args, err, stderr, tc.want)
		}
	}
}
