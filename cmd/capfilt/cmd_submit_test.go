package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/capfilt/capfilt/coordinator"
	"github.com/capfilt/capfilt/internal/testutil/pipelinetest"
	"github.com/capfilt/capfilt/internal/testutil/tinyblip"
	"github.com/capfilt/capfilt/pipeline"
	"github.com/capfilt/capfilt/shards"
	"github.com/capfilt/capfilt/synth"
)

func TestBadSettingsExitTwoWithOneLineAndPublishNothing(t *testing.T) {
	n := pipelinetest.StartNATS(t)
	dir := t.TempDir()
	model := tinyblip.ModelDir(t, 1)
	in := filepath.Join(dir, "in")
	if _, err := synth.WriteSampleShards(in, 2, synth.SampleOptions{PerShard: 2}); err != nil {
		t.Fatal(err)
	}
	blocker := filepath.Join(dir, "a-file")
	os.WriteFile(blocker, []byte("x"), 0o644)
	base := func(extra ...string) []string {
		args := []string{"submit", "--run", "bad", "--nats", n.URL, "--model", model, "--input", in + "/{00000..00001}.tar",
			"--output", filepath.Join(dir, "out")}
		return append(args, extra...)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string // the error names the problem
	}{
		{"unreachable NATS", append(base(), "--nats", "nats://127.0.0.1:1"), "127.0.0.1:1"},
		{"missing input shard", append(base(), "--input", in+"/{00000..00002}.tar"), "00002.tar"},
		{"input that matches nothing", append(base(), "--input", filepath.Join(dir, "none", "*.tar")), "none/*.tar"},
		{"unwritable output", append(base(), "--output", filepath.Join(blocker, "out")), "not writable"},
		{"unknown model path", append(base(), "--model", filepath.Join(dir, "no-model")), "no-model"},
		{"model without tokenizer", append(base(), "--model", filepath.Join(model, "model.safetensors"), "--tokenizer", filepath.Join(dir, "nope.txt")), "nope.txt"},
		{"bad run name", append(base(), "--run", "a.b"), "a.b"},
		{"no output", []string{"submit", "--run", "bad", "--nats", n.URL, "--model", model, "--input", in + "/*.tar"}, "--output"},
		{"bad accept rule", append(base(), "--keep-web-only-if", "itm>>0.5"), "keep-web-only-if"},
		{"bad backoff", append(base(), "--retry-backoff", "soon"), "retry-backoff"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errb := runCLI(t, tc.args...)
			lines := strings.Split(strings.TrimSpace(errb), "\n")
			if code != 2 || len(lines) != 1 || !strings.Contains(errb, tc.want) {
				t.Fatalf("exit %d, stderr:\n%s\nwant exit 2 and one line naming %q", code, errb, tc.want)
			}
		})
	}
	_, js := n.Connect(t)
	if q, err := pipeline.OpenQueue(context.Background(), js); err == nil {
		if jobs, _ := q.PendingJobs(context.Background(), "bad"); jobs != 0 {
			t.Fatalf("%d jobs published by refused submits", jobs)
		}
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"worker on an unreachable NATS", []string{"worker", "--nats", "nats://127.0.0.1:1"}, "127.0.0.1:1"},
		{"worker batch size", []string{"worker", "--nats", n.URL, "--batch-size", "many"}, "batch-size"},
		{"worker device", []string{"worker", "--nats", n.URL, "--device", "tpu"}, "tpu"},
		{"status of an unknown run", []string{"status", "--nats", n.URL, "--run", "nobody"}, "nobody"},
		{"retry without a choice", []string{"retry", "--nats", n.URL, "--run", "bad"}, "--failed"},
		{"run with a broken model", []string{"run", "--model", blocker, "--input", in + "/*.tar", "--output", filepath.Join(dir, "o")}, "a-file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errb := runCLI(t, tc.args...)
			if code != 2 || strings.Count(strings.TrimSpace(errb), "\n") != 0 || !strings.Contains(errb, tc.want) {
				t.Fatalf("exit %d, stderr:\n%s\nwant exit 2 and one line naming %q", code, errb, tc.want)
			}
		})
	}
}

// freePort finds a port nobody listens on.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startWorkerProcess runs `capfilt worker` as a separate process (this test binary).
func startWorkerProcess(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(t.TempDir(), "worker.log"))
	if err != nil {
		t.Fatal(err)
	}
	c := exec.Command(exe, append([]string{"worker"}, args...)...)
	c.Env = append(os.Environ(), "CAPFILT_MAIN=1")
	c.Stdout, c.Stderr = logf, logf
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Process.Kill()
		c.Wait()
		if t.Failed() {
			data, _ := os.ReadFile(logf.Name())
			t.Logf("worker log:\n%s", data)
		}
	})
	return c
}

func TestSubmitWaitStatusAndRetryThroughTheCLI(t *testing.T) {
	n := pipelinetest.StartNATS(t)
	dir := t.TempDir()
	model := tinyblip.ModelDir(t, 1)
	in, out := filepath.Join(dir, "in"), filepath.Join(dir, "out")
	if _, err := synth.WriteSampleShards(in, 3, synth.SampleOptions{PerShard: 6, Seed: 2}); err != nil {
		t.Fatal(err)
	}
	poison := filepath.Join(in, "00003.tar")
	os.WriteFile(poison, []byte(strings.Repeat("garbage ", 100)), 0o644)
	port := freePort(t)
	worker := startWorkerProcess(t, "--nats", n.URL, "--threads", "1", "--batch-size", "4", "--metrics-addr", fmt.Sprintf("127.0.0.1:%d", port),
		"--worker-id", "cli-worker")

	submit := []string{"submit", "--run", "cli", "--nats", n.URL, "--model", model, "--input", in + "/*.tar", "--output", out,
		"--itm-threshold", "0", "--ack-wait", "2s", "--retry-backoff", "50ms", "--max-deliver", "3"}
	code, stdout, stderr := runCLI(t, append(submit, "--wait")...)
	if code != 1 || !strings.Contains(stdout, "4 shards: 3 done, 1 dead") || !strings.Contains(stdout, "dead 00003 "+poison) ||
		!strings.Contains(stderr, "capfilt retry --run cli --failed") {
		t.Fatalf("submit --wait with a poison shard: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}

	stdout = mustRun(t, "status", "--nats", n.URL, "--run", "cli")
	if !strings.Contains(stdout, "done 3, failed 0, dead 1") || !strings.Contains(stdout, "00003 dead after 1 attempts: "+poison) {
		t.Fatalf("status:\n%s", stdout)
	}
	var st coordinator.RunStatus
	if err := json.Unmarshal([]byte(mustRun(t, "status", "--nats", n.URL, "--run", "cli", "--json")), &st); err != nil {
		t.Fatal(err)
	}
	if !st.Complete || st.Shards != 4 || len(st.Problems) != 1 || st.Problems[0].State != pipeline.Dead || st.Images.Read != 18 {
		t.Fatalf("status --json: %+v", st)
	}

	// A second submit of the same run publishes nothing.
	if stdout := mustRun(t, submit...); !strings.Contains(stdout, "already submitted") {
		t.Fatalf("re-submit said:\n%s", stdout)
	}

	if _, err := synth.WriteSampleShards(filepath.Join(dir, "mend"), 4, synth.SampleOptions{PerShard: 6, Seed: 2}); err != nil {
		t.Fatal(err)
	}
	os.Rename(filepath.Join(dir, "mend", "00003.tar"), poison)
	if stdout := mustRun(t, "retry", "--nats", n.URL, "--run", "cli", "--failed", "--wait"); !strings.Contains(stdout, "1 shards re-enqueued") ||
		!strings.Contains(stdout, "4 shards: 4 done, 0 dead") {
		t.Fatalf("retry said:\n%s", stdout)
	}
	m, err := coordinator.ReadManifest(context.Background(), shards.OpenStore(shards.StoreConfig{}), shards.URL{Scheme: shards.SchemeFile, Path: out})
	if err != nil || m.Dead != 0 || m.Done != 4 || m.Shards[3].State != pipeline.Done || m.Shards[3].Error != "" {
		t.Fatalf("manifest after the retry: %+v (%v); it must no longer list the shard as dead", m, err)
	}
	watch := mustRun(t, "status", "--nats", n.URL, "--run", "cli", "--watch", "--interval", "100ms", "--json")
	lines := strings.Split(strings.TrimSpace(watch), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &st); err != nil {
		t.Fatal(err)
	}
	if !st.Complete || st.ByState[pipeline.Done] != 4 || st.Images.Read != 24 {
		t.Fatalf("after the retry: %+v", st)
	}

	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`capfilt_worker_images_total{outcome="accepted",worker="cli-worker"}`, "capfilt_worker_batch_seconds_bucket",
		`capfilt_worker_shards_total{outcome="dead",worker="cli-worker"} 1`, `capfilt_worker_errors_total{reason="shard_failed",worker="cli-worker"} 1`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	worker.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- worker.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("worker after SIGTERM: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("worker did not stop on SIGTERM")
	}
}
