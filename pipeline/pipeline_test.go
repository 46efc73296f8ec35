package pipeline_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/capfilt/capfilt/internal/testutil/pipelinetest"
	"github.com/capfilt/capfilt/pipeline"
)

func TestNamesAreSafeForSubjectsKeysAndFiles(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{{"laion-2b_part1", true}, {"a", true}, {"", false}, {"has.dot", false}, {"has space", false}, {"a/b", false}, {"a*", false}} {
		if err := pipeline.ValidateRunName(tc.name); (err == nil) != tc.ok {
			t.Errorf("run name %q: err %v", tc.name, err)
		}
	}
	for _, tc := range []struct {
		i, n int
		want string
	}{{0, 1, "00000"}, {41, 100, "00041"}, {7, 1_000_000, "000007"}, {999_999, 1_000_000, "999999"}} {
		if got := pipeline.ShardID(tc.i, tc.n); got != tc.want {
			t.Errorf("ShardID(%d, %d) = %q, want %q", tc.i, tc.n, got, tc.want)
		}
	}
	if got := pipeline.RedactURL("nats://alice:secret@h1:4222,nats://h2:4222"); got != "nats://redacted@h1:4222,nats://h2:4222" {
		t.Errorf("redacted %q", got)
	}
}

func TestDecodeJobRefusesWhatNoWorkerCanDo(t *testing.T) {
	good := pipeline.Job{Run: "r", Shard: pipeline.ShardRef{ID: "00000", URL: "s3://b/0.tar"}, Output: "s3://b/out"}
	data, _ := pipeline.EncodeJob(good)
	if j, err := pipeline.DecodeJob(data); err != nil || j.Shard.URL != good.Shard.URL {
		t.Fatalf("good job: %+v %v", j, err)
	}
	for _, bad := range []string{`{`, `{"run":"r"}`, `{"run":"a b","shard":{"id":"0","url":"x"},"output":"o"}`,
		`{"run":"r","shard":{"id":"0","url":"x"},"output":"o","extra":1}`} {
		if _, err := pipeline.DecodeJob([]byte(bad)); err == nil {
			t.Errorf("job %s decoded", bad)
		}
	}
}

func TestSettingsDifferencesNameWhatChanged(t *testing.T) {
	a := pipeline.RunSettings{Run: "r", Inputs: []string{"x"}, Output: "o", Generation: json.RawMessage(`{"seed": 1}`),
		Rule: pipeline.RuleSpec{Web: "itm>=0.5"}, SubmittedAt: time.Now()}
	b := a
	b.Generation = json.RawMessage(`{"seed":1}`) // the same JSON, spaced differently
	b.SubmittedAt, b.Version = time.Time{}, "other"
	if d := a.Differences(b); d != "" {
		t.Fatalf("same settings differ in %q", d)
	}
	b.Output, b.Rule.Web = "o2", "itm>=0.6"
	if d := a.Differences(b); d != "output, accept rule" {
		t.Fatalf("differences %q", d)
	}
}

func TestQueueSettingsLiveOnTheServer(t *testing.T) {
	n := pipelinetest.StartNATS(t)
	_, js := n.Connect(t)
	ctx := context.Background()
	if _, err := pipeline.OpenQueue(ctx, js); err != pipeline.ErrNoQueue {
		t.Fatalf("open before any submit: %v", err)
	}
	cfg := pipeline.QueueConfig{AckWait: 3 * time.Second, MaxDeliver: 4, Backoff: []time.Duration{time.Second, time.Minute}}
	if _, err := pipeline.EnsureQueue(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	q, err := pipeline.OpenQueue(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	got := q.Config
	if got.AckWait != 3*time.Second || got.MaxDeliver != 4 || len(got.Backoff) != 2 || got.BackoffAfter(1) != time.Second ||
		got.BackoffAfter(9) != time.Minute {
		t.Fatalf("config read back %+v", got)
	}
	// A later submit changes the settings: a running process reads the new ones.
	if _, err := pipeline.EnsureQueue(ctx, js, pipeline.QueueConfig{AckWait: 9 * time.Second}); err != nil {
		t.Fatal(err)
	}
	if now, err := q.ReadConfig(ctx); err != nil || now.AckWait != 9*time.Second || now.MaxDeliver != pipeline.DefaultMaxDeliver {
		t.Fatalf("settings re-read %+v (%v)", now, err)
	}
	info, err := q.Stream.Info(ctx)
	if err != nil || info.Config.Retention != jetstream.WorkQueuePolicy || info.Config.Duplicates != pipeline.DefaultDedupWindow {
		t.Fatalf("stream %+v %v", info, err)
	}
	if ci := q.Consumer.CachedInfo().Config; ci.MaxDeliver != pipeline.DefaultMaxDeliver+1 || ci.AckPolicy != jetstream.AckExplicitPolicy {
		t.Fatalf("consumer max deliver %d (one past the attempts), ack policy %v", ci.MaxDeliver, ci.AckPolicy)
	}
}

func TestEmbeddedServerKeepsJobsAcrossARestart(t *testing.T) {
	n := pipelinetest.StartNATS(t)
	q := n.EnsureQueue(t)
	ctx := context.Background()
	if _, err := q.JS.Publish(ctx, pipeline.JobSubject("r"), []byte(`{}`), jetstream.WithMsgID("r/00000")); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Runs.Put(ctx, "r", []byte(`{"run":"r"}`)); err != nil {
		t.Fatal(err)
	}
	n.Restart(t)
	if filepath.Base(n.StoreDir) != "jetstream" {
		t.Fatalf("store dir %s", n.StoreDir)
	}
	_, js := n.Connect(t)
	q2, err := pipeline.OpenQueue(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	if jobs, err := q2.PendingJobs(ctx, "r"); err != nil || jobs != 1 {
		t.Fatalf("%d jobs after the restart (%v)", jobs, err)
	}
	if _, err := q2.Runs.Get(ctx, "r"); err != nil {
		t.Fatalf("run settings after the restart: %v", err)
	}
	// The dedup window survives too: the same id is still a duplicate.
	ack, err := js.Publish(ctx, pipeline.JobSubject("r"), []byte(`{}`), jetstream.WithMsgID("r/00000"))
	if err != nil || !ack.Duplicate {
		t.Fatalf("re-publish after restart: %+v %v", ack, err)
	}
}
