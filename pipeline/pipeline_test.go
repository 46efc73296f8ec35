package pipeline_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/capfilt/capfilt/internal/testutil/pipelinetest"
	"github.com/capfilt/capfilt/pipeline"
	"github.com/capfilt/capfilt/pipeline/spec"
	"github.com/capfilt/capfilt/shards"
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
	in, _ := shards.ParseURL("s3://b/0.tar")
	out, _ := shards.ParseURL("s3://b/out")
	good := pipeline.Job{Run: "r", Shard: pipeline.ShardRef{ID: "00000", URL: in}, Output: out}
	data, _ := pipeline.EncodeJob(good)
	// URLs travel as the strings a user writes, parsed once.
	if !strings.Contains(string(data), `"url":"s3://b/0.tar"`) || !strings.Contains(string(data), `"output":"s3://b/out"`) {
		t.Fatalf("job json %s", data)
	}
	if j, err := pipeline.DecodeJob(data); err != nil || j != good {
		t.Fatalf("good job: %+v %v", j, err)
	}
	for _, bad := range []string{`{`, `{"run":"r"}`, `{"run":"a b","shard":{"id":"0","url":"x"},"output":"o"}`,
		`{"run":"r","shard":{"id":"0","url":"x"},"output":"o","extra":1}`, `{"run":"r","shard":{"id":"0","url":"s3:/x"},"output":"o"}`,
		`{"run":"r","shard":{"id":"0","url":"x"},"output":""}`} {
		if _, err := pipeline.DecodeJob([]byte(bad)); err == nil {
			t.Errorf("job %s decoded", bad)
		}
	}
	if good.MsgID() != "r/00000" {
		t.Errorf("first job's id %s", good.MsgID())
	}
	good.Retry = 2
	if good.MsgID() != "r/00000/retry-2" {
		t.Errorf("retry's id %s", good.MsgID())
	}
}

func TestRunSettingsTravelTypedAndDifferencesNameWhatChanged(t *testing.T) {
	out, _ := shards.ParseURL("/tmp/o")
	a := pipeline.RunSettings{Run: "r", Inputs: []string{"x"}, Output: out, Generation: spec.NucleusDefaults(),
		Rule: spec.DefaultRule(), Queue: spec.DefaultQueue(), SubmittedAt: time.Now().UTC()}
	data, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"output":"/tmp/o"`, `"top_p":0.9`, `"web":"itm\u003e=0.5"`, `"backoff":"5s,30s,2m0s,5m0s"`} {
		if !strings.Contains(string(data), want) {
			t.Errorf("settings json lacks %s: %s", want, data)
		}
	}
	var b pipeline.RunSettings
	if err := json.Unmarshal(data, &b); err != nil {
		t.Fatal(err)
	}
	b.Version = "other"
	if d := a.Differences(b); d != "" {
		t.Fatalf("the same settings read back differ in %q", d)
	}
	b.Output = out.Join("2")
	b.Rule.Web = spec.ITMOnly(0.6)
	b.Generation.Seed = 9
	b.Queue.MaxDeliver = 2
	if d := a.Differences(b); d != "output, generation settings, accept rule, queue settings" {
		t.Fatalf("differences %q", d)
	}
	if err := a.Validate(); err != nil {
		t.Fatalf("valid settings: %v", err)
	}
	a.Generation.TopP, a.MaxPixels = 2, -1
	if err := a.Validate(); err == nil || !strings.Contains(err.Error(), "top-p 2") || !strings.Contains(err.Error(), "max-pixels -1") {
		t.Fatalf("invalid settings: %v", err)
	}
}

func TestEachRunHasItsOwnConsumerAndAckWait(t *testing.T) {
	n := pipelinetest.StartNATS(t)
	_, js := n.Connect(t)
	ctx := context.Background()
	if _, err := pipeline.OpenQueue(ctx, js); err != pipeline.ErrNoQueue {
		t.Fatalf("open before any submit: %v", err)
	}
	if _, err := pipeline.EnsureQueue(ctx, js, pipeline.QueueConfig{DedupWindow: time.Hour}); err != nil {
		t.Fatal(err)
	}
	q, err := pipeline.OpenQueue(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	if got := q.Config(); got.DedupWindow != time.Hour || got.Replicas != 1 {
		t.Fatalf("config read back %+v", got)
	}
	waits := map[string]time.Duration{"fast": time.Second, "slow": 3 * time.Second}
	for run, wait := range waits {
		if err := q.EnsureRunConsumer(ctx, run, spec.Queue{AckWait: wait}); err != nil {
			t.Fatal(err)
		}
		if _, err := q.PublishJob(ctx, testJob(t, run, "00000")); err != nil {
			t.Fatal(err)
		}
		if got, err := q.RunAckWait(ctx, run); err != nil || got != wait {
			t.Fatalf("run %s: ack wait %v (%v), want %v", run, got, err, wait)
		}
	}
	cons, err := js.Consumer(ctx, pipeline.StreamName, pipeline.RunConsumerName("fast"))
	if ci := cons.CachedInfo().Config; err != nil || ci.MaxDeliver != -1 || ci.AckPolicy != jetstream.AckExplicitPolicy || ci.FilterSubject != "capfilt.jobs.fast" {
		t.Fatalf("consumer %+v (%v): want unlimited deliveries (workers count attempts), explicit acks, the run's subject", ci, err)
	}

	// Both jobs go out and are never settled, as with a worker that died: each comes back
	// after its own run's ack wait.
	began := time.Now()
	seen := map[string]bool{}
	for range 2 {
		d, err := q.Fetch(ctx, time.Second)
		if err != nil || d == nil {
			t.Fatalf("fetch: %v", err)
		}
		j, _ := pipeline.DecodeJob(d.Data())
		seen[j.Run] = true
	}
	if len(seen) != 2 {
		t.Fatalf("two fetches gave jobs of %v: runs take turns", seen)
	}
	back := map[string]time.Duration{}
	for len(back) < 2 && time.Since(began) < 10*time.Second {
		d, err := q.Fetch(ctx, 100*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		if d == nil {
			continue
		}
		j, _ := pipeline.DecodeJob(d.Data())
		if d.Attempt() != 2 {
			t.Fatalf("run %s: delivery %d", j.Run, d.Attempt())
		}
		back[j.Run] = time.Since(began)
		d.Ack(ctx)
	}
	for run, wait := range waits {
		if got := back[run]; got < wait || got > wait+1500*time.Millisecond {
			t.Errorf("run %s (ack wait %v): redelivered after %v", run, wait, got)
		}
	}
	stream, err := js.Stream(ctx, pipeline.StreamName)
	if err != nil || stream.CachedInfo().Config.Retention != jetstream.WorkQueuePolicy {
		t.Fatalf("stream %v", err)
	}
}

// A queue created by capfilt before runs had their own consumers has one consumer on
// every job subject, which a work-queue stream lets no other consumer overlap: the next
// EnsureQueue removes it, and its jobs go out through their runs' consumers.
func TestEnsureQueueRetiresTheSharedConsumerOfOlderVersions(t *testing.T) {
	n := pipelinetest.StartNATS(t)
	q := n.EnsureQueue(t)
	_, js := n.Connect(t)
	ctx := context.Background()
	if _, err := js.CreateConsumer(ctx, pipeline.StreamName, jetstream.ConsumerConfig{Durable: "capfilt-workers",
		AckPolicy: jetstream.AckExplicitPolicy, FilterSubject: pipeline.SubjectPrefix + ".>"}); err != nil {
		t.Fatal(err)
	}
	if _, err := q.PublishJob(ctx, testJob(t, "old", "00000")); err != nil {
		t.Fatal(err)
	}
	q = n.EnsureQueue(t)
	if _, err := js.Consumer(ctx, pipeline.StreamName, "capfilt-workers"); !errors.Is(err, jetstream.ErrConsumerNotFound) {
		t.Fatalf("the shared consumer is still there: %v", err)
	}
	if d, err := q.Fetch(ctx, time.Second); err != nil || d == nil {
		t.Fatalf("the old run's job: %v %v", d, err)
	}
}

// An operator who runs the queue at R3 keeps R3: a submit that does not ask for
// replicas (the default 1) does not scale the stream, the buckets or new consumers down.
func TestQueueReplicasAreNeverLowered(t *testing.T) {
	urls := pipelinetest.StartCluster(t, 3)
	nc, js, err := pipeline.Connect(urls, pipeline.ConnectOptions{Name: t.Name()})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := pipeline.EnsureQueue(ctx, js, pipeline.QueueConfig{Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	q, err := pipeline.EnsureQueue(ctx, js, pipeline.QueueConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if err := q.EnsureRunConsumer(ctx, "r", spec.DefaultQueue()); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{pipeline.StreamName, "KV_" + pipeline.ShardsBucket, "KV_" + pipeline.RunsBucket} {
		st, err := js.Stream(ctx, name)
		if err != nil || st.CachedInfo().Config.Replicas != 3 {
			t.Errorf("stream %s: %v", name, err)
			continue
		}
	}
	cons, err := js.Consumer(ctx, pipeline.StreamName, pipeline.RunConsumerName("r"))
	if err != nil || cons.CachedInfo().Config.Replicas != 3 || q.Config().Replicas != 3 {
		t.Fatalf("run consumer at R%d (%v), queue config %+v", cons.CachedInfo().Config.Replicas, err, q.Config())
	}
}

func testJob(t *testing.T, run, shard string) pipeline.Job {
	t.Helper()
	u, err := shards.ParseURL("/in/" + shard + ".tar")
	if err != nil {
		t.Fatal(err)
	}
	return pipeline.Job{Run: run, Shard: pipeline.ShardRef{ID: shard, URL: u}, Output: u.Join("..", "out")}
}

func TestJobsAreFetchedSettledAndPublishedOnce(t *testing.T) {
	n := pipelinetest.StartNATS(t)
	q := n.EnsureQueue(t)
	ctx := context.Background()
	jobs := []pipeline.Job{testJob(t, "r", "00000"), testJob(t, "r", "00001")}
	fresh, err := q.PublishJobs(ctx, jobs)
	if err != nil || len(fresh) != 2 || !fresh[0] || !fresh[1] {
		t.Fatalf("publish %v (%v)", fresh, err)
	}
	if fresh, err := q.PublishJobs(ctx, jobs[:1]); err != nil || fresh[0] {
		t.Fatalf("the same id again must be a duplicate: %v (%v)", fresh, err)
	}
	d, err := q.Fetch(ctx, time.Second)
	if err != nil || d == nil || d.Attempt() != 1 || d.Subject() != pipeline.JobSubject("r") {
		t.Fatalf("fetch %+v (%v)", d, err)
	}
	first, err := pipeline.DecodeJob(d.Data())
	if err != nil || first != jobs[0] {
		t.Fatalf("job %+v (%v)", first, err)
	}
	if err := d.NakAfter(10 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	for _, want := range []struct {
		shard   string
		attempt int
	}{{"00001", 1}, {"00000", 2}} {
		d, err := q.Fetch(ctx, 2*time.Second)
		if err != nil || d == nil {
			t.Fatalf("fetch: %v", err)
		}
		j, _ := pipeline.DecodeJob(d.Data())
		if j.Shard.ID != want.shard || d.Attempt() != want.attempt {
			t.Fatalf("got shard %s attempt %d, want %s attempt %d", j.Shard.ID, d.Attempt(), want.shard, want.attempt)
		}
		if want.shard == "00001" {
			err = d.Ack(ctx)
			if err == nil {
				err = d.Ack(ctx) // a second ack is no error
			}
		} else {
			err = d.Term(ctx, "test")
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	waitPending(t, q, "r", 0)
	if d, err := q.Fetch(ctx, 200*time.Millisecond); d != nil {
		t.Fatalf("fetch from an empty queue: %+v (%v)", d, err)
	}
}

func waitPending(t *testing.T, q *pipeline.Queue, run string, want uint64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, err := q.PendingJobs(context.Background(), run)
		if err == nil && n == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d jobs of run %s pending (%v), want %d", n, run, err, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestEmbeddedServerKeepsJobsAcrossARestart(t *testing.T) {
	n := pipelinetest.StartNATS(t)
	q := n.EnsureQueue(t)
	ctx := context.Background()
	job := testJob(t, "r", "00000")
	if _, err := q.PublishJob(ctx, job); err != nil {
		t.Fatal(err)
	}
	if err := q.CreateRunSettings(ctx, pipeline.RunSettings{Run: "r", Generation: spec.NucleusDefaults()}); err != nil {
		t.Fatal(err)
	}
	if err := q.CreateRunSettings(ctx, pipeline.RunSettings{Run: "r"}); !errors.Is(err, pipeline.ErrExists) {
		t.Fatalf("second create: %v", err)
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
	if rs, err := q2.RunSettings(ctx, "r"); err != nil || rs.Generation != spec.NucleusDefaults() {
		t.Fatalf("run settings after the restart: %+v %v", rs, err)
	}
	if _, err := q2.RunSettings(ctx, "nobody"); !errors.Is(err, pipeline.ErrNotFound) {
		t.Fatalf("unknown run: %v", err)
	}
	// The dedup window survives too: the same id is still a duplicate.
	if fresh, err := q2.PublishJob(ctx, job); err != nil || fresh {
		t.Fatalf("re-publish after restart: fresh %v (%v)", fresh, err)
	}
}

func TestEmbeddedServerOnAPortInUseFailsAtOnce(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	began := time.Now()
	s, err := pipeline.StartEmbeddedServer(pipeline.ServerConfig{StoreDir: t.TempDir(), Port: port})
	if err == nil {
		s.Shutdown()
		t.Fatal("a server started on a port in use")
	}
	if d := time.Since(began); d > 3*time.Second || !strings.Contains(err.Error(), strconv.Itoa(port)) {
		t.Fatalf("after %v: %v; want an error naming port %d at once", d, err, port)
	}
}
