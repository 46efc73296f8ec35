// Package pipelinetest holds what the tests of the distributed pipeline share: an embedded
// NATS server that can be restarted, and a queue with short waits. It is apart from
// testutil because it imports pipeline, whose dependency shards uses testutil in its
// tests; and apart from tinyblip so that the coordinator's tests link no model code.
package pipelinetest

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/capfilt/capfilt/pipeline"
	"github.com/capfilt/capfilt/pipeline/spec"
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

// FastQueue is a queue configuration for tests: a short ack wait.
func FastQueue() pipeline.QueueConfig { return pipeline.QueueConfig{AckWait: FastRetries().AckWait} }

// FastRetries are a test run's queue settings: a short ack wait and backoff.
func FastRetries() spec.Queue {
	return spec.Queue{AckWait: 2 * time.Second, MaxDeliver: 5, Backoff: spec.Backoff{50 * time.Millisecond}}
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
