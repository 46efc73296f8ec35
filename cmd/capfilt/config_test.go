package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/capfilt/capfilt/torch"
)

// runCLI runs capfilt in-process and returns exit code, stdout and stderr.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := execute(args, &out, &errb)
	return code, out.String(), errb.String()
}

// settingLine finds "name: value # source" in capfilt config's output.
func settingLine(t *testing.T, out, name string) (value, source string) {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `:\s+(\S+)\s+# (\w+)$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no line for %s in:\n%s", name, out)
	}
	return m[1], m[2]
}

func TestSettingsPrecedenceFileThenEnvThenFlag(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "capfilt.yaml")
	if err := os.WriteFile(cfg, []byte("log-level: warn\nthreads: 1\nlog-format: json\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CAPFILT_LOG_LEVEL", "")
	os.Unsetenv("CAPFILT_LOG_LEVEL")

	_, out, _ := runCLI(t, "config", "--config", cfg)
	if v, src := settingLine(t, out, "log-level"); v != "warn" || src != "file" {
		t.Fatalf("file alone: log-level %s from %s", v, src)
	}

	t.Setenv("CAPFILT_LOG_LEVEL", "error")
	_, out, _ = runCLI(t, "config", "--config", cfg)
	if v, src := settingLine(t, out, "log-level"); v != "error" || src != "env" {
		t.Fatalf("env over file: log-level %s from %s", v, src)
	}
	if v, src := settingLine(t, out, "threads"); v != "1" || src != "file" {
		t.Fatalf("untouched by env: threads %s from %s", v, src)
	}

	_, out, _ = runCLI(t, "config", "--config", cfg, "--log-level", "debug")
	if v, src := settingLine(t, out, "log-level"); v != "debug" || src != "flag" {
		t.Fatalf("flag over env: log-level %s from %s", v, src)
	}
	if v, src := settingLine(t, out, "log-format"); v != "json" || src != "file" {
		t.Fatalf("log-format %s from %s", v, src)
	}
}

func TestConfigFileFoundInWorkingDirectory(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "capfilt.yaml"), []byte("threads: 2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	t.Setenv("HOME", t.TempDir())
	_, out, _ := runCLI(t, "config")
	if v, src := settingLine(t, out, "threads"); v != "2" || src != "file" {
		t.Fatalf("threads %s from %s", v, src)
	}
}

func TestBadSettingsExitTwoWithTheirName(t *testing.T) {
	dir := t.TempDir()
	typo := filepath.Join(dir, "typo.yaml")
	os.WriteFile(typo, []byte("log-levle: debug\n"), 0o644)
	broken := filepath.Join(dir, "broken.yaml")
	os.WriteFile(broken, []byte("threads: [1\n"), 0o644)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"config", "--config", typo}, `unknown setting(s) log-levle`},
		{[]string{"config", "--config", broken}, "broken.yaml"},
		{[]string{"config", "--config", filepath.Join(dir, "missing.yaml")}, "missing.yaml"},
		{[]string{"config", "--log-level", "loud"}, `log-level "loud"`},
		{[]string{"config", "--log-format", "xml"}, `log-format "xml"`},
		{[]string{"config", "--threads", "-1"}, "threads -1"},
		{[]string{"version", "--no-such-flag"}, "unknown flag"},
	}
	for _, c := range cases {
		code, _, stderr := runCLI(t, c.args...)
		if code != 2 || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 mentioning %q", c.args, code, stderr, c.want)
		}
	}
}

func TestVersionNamesLibtorchAndBLAS(t *testing.T) {
	code, out, stderr := runCLI(t, "version")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"capfilt ", "go1.", "libtorch  " + torch.Version(), "OpenBLAS", "cpu"} {
		if !strings.Contains(out, want) {
			t.Errorf("version output lacks %q:\n%s", want, out)
		}
	}
	code, out, _ = runCLI(t, "version", "--json")
	if code != 0 || !strings.Contains(out, `"libtorch": "`+torch.Version()) || !strings.Contains(out, `"core"`) {
		t.Fatalf("version --json: %s", out)
	}
}

// perInvocation are flags that say what one command does now (an output format, the files
// of this call), not settings a capfilt.yaml would hold.
var perInvocation = map[string]bool{
	"json": true, "watch": true, "interval": true, "failed": true, "shard": true, "greedy": true,
	"image": true, "text": true, "pairs": true, "inputs": true, "out": true, "prompt-len": true,
	"preset": true, "vocab": true, "corrupt": true, "mismatch": true, "per-shard": true, "shards": true,
	"image-size": true, "preprocess-size": true, "processes": true, "threads-per-worker": true,
	"repeat": true, "wait": true, "grads": true,
}

// capfilt.example.yaml documents every setting: a new flag must be added there.
func TestExampleConfigDocumentsEverySetting(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "capfilt.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "#"))
		if k, _, ok := strings.Cut(line, ":"); ok && regexp.MustCompile(`^[a-z0-9-]+$`).MatchString(strings.TrimSpace(k)) {
			documented[strings.TrimSpace(k)] = true
		}
	}
	for name := range knownSettings(newRootCommand()) {
		if !perInvocation[name] && !documented[name] {
			t.Errorf("setting %q is not in capfilt.example.yaml", name)
		}
	}
}
