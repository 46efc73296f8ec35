package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/capfilt/capfilt/internal/testutil/pipelinetest"
	"github.com/capfilt/capfilt/internal/testutil/tinyblip"
	"github.com/capfilt/capfilt/pipeline"
	"github.com/capfilt/capfilt/synth"
)

// A bad value is an error naming the setting, the value and where it came from, whatever
// the source; none silently becomes a default, and nothing is published.
func TestBadValuesFromEverySourceAreRefusedWithTheirSource(t *testing.T) {
	n := pipelinetest.StartNATS(t)
	dir := t.TempDir()
	model := tinyblip.ModelDir(t, 1)
	in := filepath.Join(dir, "in")
	if _, err := synth.WriteSampleShards(in, 2, synth.SampleOptions{PerShard: 2}); err != nil {
		t.Fatal(err)
	}
	file := func(body string) string {
		p := filepath.Join(t.TempDir(), "capfilt.yaml")
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	highFile := file("itm-threshold: high\n")
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"a word for a number in the environment", map[string]string{"CAPFILT_ITM_THRESHOLD": "high"}, nil,
			`itm-threshold "high" (from CAPFILT_ITM_THRESHOLD): not a number`},
		{"a word for a number in the file", nil, []string{"--config", highFile},
			`itm-threshold "high" (from ` + highFile + `): not a number`},
		{"a word for a number on the command line", nil, []string{"--itm-threshold", "high"},
			`itm-threshold "high" (from --itm-threshold): not a number`},
		{"a count that is no number", nil, []string{"--config", file("max-deliver: many\n")}, `max-deliver "many"`},
		{"a duration without a unit", map[string]string{"CAPFILT_ACK_WAIT": "60"}, nil,
			`ack-wait "60" (from CAPFILT_ACK_WAIT): not a duration`},
		{"a switch that is no boolean", map[string]string{"CAPFILT_FILTER_HUMAN": "yes"}, nil,
			`filter-human "yes" (from CAPFILT_FILTER_HUMAN): not true or false`},
		{"a mapping for a value", nil, []string{"--config", file("s3-region:\n  where: there\n")}, "s3-region ("},
		{"an ITM bar above 1", nil, []string{"--itm-threshold", "2"}, `itm-threshold 2 (from --itm-threshold): must be in [0, 1]`},
		{"an ITM bar below 0", map[string]string{"CAPFILT_ITM_THRESHOLD": "-1"}, nil, `itm-threshold -1 (from CAPFILT_ITM_THRESHOLD): must be in [0, 1]`},
		{"an ITC bar above 1", nil, []string{"--itc-threshold", "5"}, `itc-threshold 5 (from --itc-threshold): must be in [-1, 1]`},
		{"a condition's bar out of range", nil, []string{"--keep-web-only-if", "itm>=0.5,itc>=-3"}, `keep-web-only-if "itm>=0.5,itc>=-3" (from --keep-web-only-if): itc must be in [-1, 1]`},
		{"a negative dedup window", nil, []string{"--dedup-window", "-1s"}, `dedup-window -1s (from --dedup-window): must be > 0`},
		{"a zero backoff", nil, []string{"--retry-backoff", "5s,0s"}, `retry-backoff "5s,0s" (from --retry-backoff): every wait must be > 0`},
		{"a negative pixel limit", nil, []string{"--max-pixels", "-1"}, `max-pixels -1 (from --max-pixels): must be 0`},
		{"no beam in nucleus mode", map[string]string{"CAPFILT_NUM_BEAMS": "-1"}, nil, `num-beams -1 (from CAPFILT_NUM_BEAMS): must be at least 1`},
		{"an output format capfilt does not write", nil, []string{"--output-format", "tfrecord"}, `output-format "tfrecord" (from --output-format): want parquet or wds`},
		{"a WebDataset without images", map[string]string{"CAPFILT_OUTPUT_FORMAT": "wds"}, []string{"--omit-images"},
			`output-format "wds" (from CAPFILT_OUTPUT_FORMAT): a WebDataset shard needs its images`},
		{"every column and more", nil, []string{"--keep-columns", "similarity,*"}, `keep-columns "similarity,*" (from --keep-columns): "*" keeps every column and goes alone`},
		{"an ITM first token BLIP has no mode for", map[string]string{"CAPFILT_ITM_FIRST_TOKEN": "sep"}, nil,
			`itm-first-token "sep" (from CAPFILT_ITM_FIRST_TOKEN): want enc or cls`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			args := append([]string{"submit", "--run", "bad", "--nats", n.URL, "--model", model, "--input", in + "/*.tar",
				"--output", filepath.Join(dir, "out")}, tc.args...)
			code, _, errb := runCLI(t, args...)
			if code != 2 || strings.Count(strings.TrimSpace(errb), "\n") != 0 || !strings.Contains(errb, tc.want) {
				t.Fatalf("exit %d, stderr:\n%s\nwant exit 2 and one line with %q", code, errb, tc.want)
			}
		})
	}
	_, js := n.Connect(t)
	if q, err := pipeline.OpenQueue(context.Background(), js); err == nil {
		if jobs, _ := q.PendingJobs(context.Background(), "bad"); jobs != 0 {
			t.Fatalf("%d jobs published by refused submits", jobs)
		}
	}
	// A worker refuses its own settings the same way.
	t.Setenv("CAPFILT_DRAIN_TIMEOUT", "-1s")
	if code, _, errb := runCLI(t, "worker", "--nats", n.URL); code != 2 || !strings.Contains(errb, "drain-timeout -1s (from CAPFILT_DRAIN_TIMEOUT)") {
		t.Fatalf("worker: exit %d: %s", code, errb)
	}
}

func TestMisspeltEnvironmentVariableIsWarnedWithTheClosestSetting(t *testing.T) {
	t.Setenv("CAPFILT_ITM_TRESHOLD", "0.9")
	code, _, errb := runCLI(t, "config")
	if code != 0 || !strings.Contains(errb, "CAPFILT_ITM_TRESHOLD") || !strings.Contains(errb, "closest=CAPFILT_ITM_THRESHOLD") {
		t.Fatalf("exit %d, stderr:\n%s", code, errb)
	}
}

func TestRunOnANATSPortInUseFailsAtOnce(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	dir := t.TempDir()
	in := filepath.Join(dir, "in")
	if _, err := synth.WriteSampleShards(in, 1, synth.SampleOptions{PerShard: 2}); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	code, _, errb := runCLI(t, "run", "--model", tinyblip.ModelDir(t, 1), "--input", in+"/*.tar", "--output", filepath.Join(dir, "out"),
		"--nats-port", fmt.Sprint(port))
	if code != 2 || !strings.Contains(errb, fmt.Sprintf("127.0.0.1:%d", port)) || time.Since(began) > 10*time.Second {
		t.Fatalf("after %v: exit %d, stderr %s", time.Since(began), code, errb)
	}
}

func TestConfigRedactsNATSCredentials(t *testing.T) {
	t.Setenv("CAPFILT_NATS", "nats://alice:s3cret@h1:4222,nats://h2:4222")
	_, out, _ := runCLI(t, "config")
	if v, src := settingLine(t, out, "nats"); strings.Contains(out, "s3cret") || v != `"nats://redacted@h1:4222,nats://h2:4222"` || src != "env" {
		t.Fatalf("nats %s from %s:\n%s", v, src, out)
	}
	os.Unsetenv("CAPFILT_NATS")
	cfg := filepath.Join(t.TempDir(), "capfilt.yaml")
	os.WriteFile(cfg, []byte("nats: nats://t0ken@h3:4222\n"), 0o644)
	_, out, _ = runCLI(t, "config", "worker", "--config", cfg)
	if v, _ := settingLine(t, out, "nats"); strings.Contains(out, "t0ken") || v != `"nats://redacted@h3:4222"` {
		t.Fatalf("a token in the file: nats %s:\n%s", v, out)
	}
}

// capfilt config shows what a command would use: a list as the list, a command's own
// settings with `config COMMAND`, and CAPFILT_INPUT split at commas like --input (a brace
// list stays one pattern).
func TestConfigShowsListsAndEachCommandsSettings(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "capfilt.yaml")
	os.WriteFile(cfg, []byte("input:\n  - /a/{00000..00003}.tar\n  - s3://b/web/*.tar\nbatch-size: 16\n"), 0o644)
	_, out, _ := runCLI(t, "config", "--config", cfg)
	if v, src := settingLine(t, out, "input"); v != `["/a/{00000..00003}.tar","s3://b/web/*.tar"]` || src != "file" {
		t.Fatalf("input %s from %s", v, src)
	}
	for _, cmd := range [][]string{{"caption"}, {"run"}, {"worker"}} {
		_, out, errb := runCLI(t, append(append([]string{"config"}, cmd...), "--config", cfg)...)
		if v, src := settingLine(t, out, "batch-size"); v != "16" || src != "file" {
			t.Fatalf("config %v: batch-size %s from %s (%s)", cmd, v, src, errb)
		}
	}
	_, out, _ = runCLI(t, "config", "model", "generate")
	if v, src := settingLine(t, out, "mode"); v != "nucleus" || src != "default" || strings.Contains(out, "\nnats:") ||
		strings.Contains(out, "\nout:") || !strings.Contains(out, "\nlog-level:") {
		t.Fatalf("config model generate:\n%s", out)
	}
	if code, _, errb := runCLI(t, "config", "no-such-command"); code != 2 || !strings.Contains(errb, "no-such-command") {
		t.Fatalf("config of an unknown command: exit %d %s", code, errb)
	}

	t.Setenv("CAPFILT_INPUT", "/a/{0,1}.tar, /b/*.tar")
	_, out, _ = runCLI(t, "config", "submit")
	if v, src := settingLine(t, out, "input"); v != `["/a/{0,1}.tar","/b/*.tar"]` || src != "env" {
		t.Fatalf("CAPFILT_INPUT: input %s from %s", v, src)
	}
	// The command line takes the same comma-separated form, and repeats.
	sub, _, _ := newRootCommand().Find([]string{"submit"})
	if err := sub.ParseFlags([]string{"--input", "x/{a,b}.tar,y.tar", "--input", "z.tar"}); err != nil {
		t.Fatal(err)
	}
	if got := showValue(sub.Flags().Lookup("input")); got != `["x/{a,b}.tar","y.tar","z.tar"]` {
		t.Fatalf("--input parsed as %s", got)
	}
}
