// Package pipelinetest holds what the tests of the distributed pipeline share: an embedded
// NATS server that can be restarted, a cluster of them, and run settings with short waits. It is apart from
// testutil because it imports pipeline, whose dependency shards uses testutil in its
// tests; and apart from tinyblip so that the coordinator's tests link no model code.
package pipelinetest

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"
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

// FastRetries are a test run's queue settings: a short ack wait and backoff.
func FastRetries() spec.Queue {
	return spec.Queue{AckWait: 2 * time.Second, MaxDeliver: 5, Backoff: spec.Backoff{50 * time.Millisecond}}
}

// EnsureQueue sets up the stream and buckets.
func (n *NATS) EnsureQueue(t testing.TB) *pipeline.Queue {
	t.Helper()
	_, js := n.Connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	q, err := pipeline.EnsureQueue(ctx, js, pipeline.QueueConfig{})
	if err != nil {
		t.Fatalf("ensure queue: %v", err)
	}
	return q
}

// StartCluster starts n embedded servers with JetStream routed into one cluster, and
// waits until JetStream has a leader; it returns the client URLs, comma-separated as a
// client takes them. The servers stop when the test ends.
func StartCluster(t testing.TB, n int) string {
	t.Helper()
	ports := make([]int, n)
	for i := range ports {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = ln.Addr().(*net.TCPAddr).Port
		ln.Close()
	}
	var routes []*url.URL
	for _, p := range ports {
		routes = append(routes, &url.URL{Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", p)})
	}
	var urls []string
	for i := range n {
		s, err := server.NewServer(&server.Options{
			ServerName: fmt.Sprintf("capfilt-test-%d", i), Host: "127.0.0.1", Port: server.RANDOM_PORT,
			JetStream: true, StoreDir: filepath.Join(t.TempDir(), "js"), NoSigs: true, NoLog: true,
			Cluster: server.ClusterOpts{Name: "capfilt-test", Host: "127.0.0.1", Port: ports[i]}, Routes: routes,
		})
		if err != nil {
			t.Fatalf("cluster server %d: %v", i, err)
		}
		go s.Start()
		t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
		if !s.ReadyForConnections(10 * time.Second) {
			t.Fatalf("cluster server %d did not start", i)
		}
		urls = append(urls, s.ClientURL())
	}
	all := strings.Join(urls, ",")
	nc, js, err := pipeline.Connect(all, pipeline.ConnectOptions{Name: "cluster check"})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := js.AccountInfo(ctx)
		cancel()
		if err == nil {
			return all
		}
		if time.Now().After(deadline) {
			t.Fatalf("JetStream cluster of %d has no leader after 30s: %v", n, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
