package testutil

import (
	"context"
	"encoding/json"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/capfilt/capfilt/blip"
	"github.com/capfilt/capfilt/captioner"
	"github.com/capfilt/capfilt/filter"
	"github.com/capfilt/capfilt/pipeline"
	"github.com/capfilt/capfilt/synth"
)

// NATS is an embedded nats-server with JetStream for one test.
type NATS struct {
	Server   *server.Server
	URL      string
	StoreDir string
	port     int
}

// StartNATS starts an embedded server on a fresh store dir, shut down when the test ends.
func StartNATS(t testing.TB) *NATS {
	t.Helper()
	n := &NATS{StoreDir: filepath.Join(t.TempDir(), "jetstream")}
	n.start(t)
	t.Cleanup(n.Stop)
	return n
}

func (n *NATS) start(t testing.TB) {
	t.Helper()
	s, err := pipeline.StartEmbeddedServer(pipeline.ServerConfig{StoreDir: n.StoreDir, Port: n.port})
	if err != nil {
		t.Fatalf("start nats-server: %v", err)
	}
	n.Server, n.URL = s, s.ClientURL()
	if a, ok := s.Addr().(*net.TCPAddr); ok {
		n.port = a.Port // a restart listens where the clients look
	}
}

// Stop shuts the server down (a test may restart it with Restart).
func (n *NATS) Stop() {
	if n.Server != nil {
		n.Server.Shutdown()
		n.Server.WaitForShutdown()
		n.Server = nil
	}
}

// Restart starts the server again on the same port and store dir: clients reconnect and
// find every stream, consumer, bucket and unacked message again.
func (n *NATS) Restart(t testing.TB) {
	t.Helper()
	n.Stop()
	n.start(t)
}

// Connect opens a client connection, closed when the test ends.
func (n *NATS) Connect(t testing.TB) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, js, err := pipeline.Connect(n.URL, pipeline.ConnectOptions{Name: t.Name()})
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc, js
}

// FastQueue is a queue configuration for tests: short ack wait and backoff.
func FastQueue() pipeline.QueueConfig {
	return pipeline.QueueConfig{AckWait: 2 * time.Second, MaxDeliver: 5, Backoff: []time.Duration{50 * time.Millisecond}}
}

// EnsureQueue sets up the stream, consumer and buckets with FastQueue.
func (n *NATS) EnsureQueue(t testing.TB) *pipeline.Queue {
	t.Helper()
	_, js := n.Connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	q, err := pipeline.EnsureQueue(ctx, js, FastQueue())
	if err != nil {
		t.Fatalf("ensure queue: %v", err)
	}
	return q
}

// TinyModelDir writes a deterministic random blip.Tiny checkpoint with every part (so the
// captioner and the filter share it) and its vocabulary, in an HF directory.
func TinyModelDir(t testing.TB, seed uint64) string {
	t.Helper()
	m, err := blip.New(blip.Tiny(), blip.AllParts())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.InitDeterministic(seed); err != nil {
		t.Fatal(err)
	}
	tok, err := blip.NewTokenizer(synth.TinyVocab(), blip.BertUncased)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "tiny-blip")
	if err := m.SaveHF(dir, tok); err != nil {
		t.Fatal(err)
	}
	return dir
}

// RunSettings are the settings of a test run on one model: nucleus captions seeded by
// seed 7, CapFilt's default rule.
func RunSettings(t testing.TB, run string, inputs []string, output, model string) pipeline.RunSettings {
	t.Helper()
	gen := captioner.NucleusDefaults()
	gen.Seed = 7
	raw, err := json.Marshal(gen)
	if err != nil {
		t.Fatal(err)
	}
	rule := filter.DefaultRule()
	return pipeline.RunSettings{Run: run, Inputs: inputs, Output: output,
		Captioner: pipeline.ModelSpec{Path: model}, Filter: pipeline.ModelSpec{Path: model},
		Generation: raw, Seed: gen.Seed,
		Rule: pipeline.RuleSpec{Web: rule.Web.String(), Synthetic: rule.Synthetic.String(), FilterHuman: rule.FilterHuman}}
}
