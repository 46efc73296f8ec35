package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/capfilt/capfilt/coordinator"
	"github.com/capfilt/capfilt/internal/testutil/pipelinetest"
	"github.com/capfilt/capfilt/internal/testutil/tinyblip"
	"github.com/capfilt/capfilt/pipeline"
	"github.com/capfilt/capfilt/synth"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// A worker's metrics address answers /healthz as soon as it serves, /readyz once it is
// connected to NATS and has a model loaded (at its first job), and /metrics in the
// exposition format, every worker series there before any job.
func TestWorkerMetricsAddressServesHealthReadinessAndMetrics(t *testing.T) {
	n := pipelinetest.StartNATS(t)
	dir := t.TempDir()
	modelDir := tinyblip.ModelDir(t, 1)
	in, out := filepath.Join(dir, "in"), filepath.Join(dir, "out")
	if _, err := synth.WriteSampleShards(in, 1, synth.SampleOptions{PerShard: 4, Seed: 2}); err != nil {
		t.Fatal(err)
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	startWorkerProcess(t, "--nats", n.URL, "--threads", "1", "--batch-size", "4", "--metrics-addr", strings.TrimPrefix(base, "http://"),
		"--worker-id", "probe")
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, _ := get(t, base+"/healthz")
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/healthz answers %d", code)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The worker opens NATS just after the metrics address: wait until readiness has both checks.
	var code int
	var body string
	for {
		code, body = get(t, base+"/readyz")
		if strings.Contains(body, "nats: ok") || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "nats: ok") || !strings.Contains(body, "model: not loaded yet") {
		t.Fatalf("/readyz before any job: %d %q", code, body)
	}

	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("/metrics breaks the exposition format: %v", err)
	}
	for _, name := range []string{"capfilt_worker_images_total", "capfilt_worker_shards_total", "capfilt_queue_jobs", "capfilt_queue_up",
		"go_goroutines", "process_resident_memory_bytes"} {
		if _, ok := fams[name]; !ok {
			t.Errorf("/metrics has no %s", name)
		}
	}
	if up := fams["capfilt_queue_up"].GetMetric()[0].GetGauge().GetValue(); up != 1 {
		t.Errorf("capfilt_queue_up %v: the worker reads the queue", up)
	}

	mustRun(t, "submit", "--run", "probe", "--nats", n.URL, "--model", modelDir, "--input", in+"/*.tar", "--output", out,
		"--itm-threshold", "0", "--wait")
	if code, body := get(t, base+"/readyz"); code != http.StatusOK || body != "nats: ok\nmodel: ok\n" {
		t.Fatalf("/readyz after a job: %d %q", code, body)
	}
}

var snakeCase = regexp.MustCompile(`^[a-z0-9]+(_[a-z0-9]+)*$`)

// snakeKeys names every object key of a JSON value that is not snake_case.
func snakeKeys(v any, path string, bad *[]string) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if !snakeCase.MatchString(k) {
				*bad = append(*bad, path+"."+k)
			}
			snakeKeys(e, path+"."+k, bad)
		}
	case []any:
		for i, e := range x {
			snakeKeys(e, fmt.Sprintf("%s[%d]", path, i), bad)
		}
	}
}

// status --json is for scripts: every state is in by_state (zeros too), lists are []
// rather than null, and every key is snake_case.
func TestStatusJSONListsEveryStateAndEmptyListsAsArrays(t *testing.T) {
	rs := pipeline.RunSettings{Run: "r", Shards: 3, Inputs: []string{"in/*.tar"}}
	rs.Columns.Keep = []string{"similarity"}
	for _, states := range []map[string]pipeline.ShardState{
		{},
		{"00000": {Run: "r", Shard: pipeline.ShardRef{ID: "00000"}, State: pipeline.Done, Counts: pipeline.Counts{Read: 4, Accepted: 4}},
			"00001": {Run: "r", Shard: pipeline.ShardRef{ID: "00001", Index: 1}, State: pipeline.Dead, LastError: "attempt 5: bad"},
			"00002": {Run: "r", Shard: pipeline.ShardRef{ID: "00002", Index: 2}, State: pipeline.Running, Worker: "w1", Progress: 2}},
	} {
		line, err := statusJSON(coordinator.Summarize(rs, states, time.Now()))
		if err != nil {
			t.Fatal(err)
		}
		var doc map[string]any
		if err := json.Unmarshal(line, &doc); err != nil {
			t.Fatal(err)
		}
		by, _ := doc["by_state"].(map[string]any)
		for _, st := range []string{"pending", "running", "done", "failed", "dead"} {
			if _, ok := by[st].(float64); !ok {
				t.Errorf("by_state lacks %q: %s", st, line)
			}
		}
		for _, list := range []string{"problems", "workers"} {
			if _, ok := doc[list].([]any); !ok {
				t.Errorf("%s is %v, want a list: %s", list, doc[list], line)
			}
		}
		var bad []string
		snakeKeys(doc, "", &bad)
		if len(bad) > 0 {
			t.Errorf("keys not snake_case: %v", bad)
		}
		if len(states) == 0 && by["pending"] != float64(3) {
			t.Errorf("a run with no state yet has its 3 shards pending: %s", line)
		}
	}
}
