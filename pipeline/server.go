package pipeline

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// ServerConfig configures an embedded nats-server.
type ServerConfig struct {
	// StoreDir holds JetStream's files; a server restarted on the same folder finds its
	// streams, consumers, KV buckets and unacked jobs again.
	StoreDir string
	// Host to listen on (default 127.0.0.1: the embedded server is for this machine).
	Host string
	// Port to listen on; 0 picks a free one.
	Port int
	// Logs turns on the server's own log lines (on stderr).
	Logs bool
}

// StartEmbeddedServer starts nats-server as a library with JetStream on cfg.StoreDir, and
// waits until it accepts connections. The caller shuts it down (Shutdown, then
// WaitForShutdown). It listens on a real TCP port so that worker processes can join it.
func StartEmbeddedServer(cfg ServerConfig) (*server.Server, error) {
	if cfg.StoreDir == "" {
		return nil, errors.New("embedded nats-server: no store dir")
	}
	if err := os.MkdirAll(cfg.StoreDir, 0o755); err != nil {
		return nil, fmt.Errorf("embedded nats-server: store dir: %w", err)
	}
	host, port := cfg.Host, cfg.Port
	if host == "" {
		host = "127.0.0.1"
	}
	if port == 0 {
		port = server.RANDOM_PORT
	} else {
		// nats-server reports a port it cannot listen on only in its log and then never
		// becomes ready: find out at once instead of after the 30 s wait below.
		ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return nil, fmt.Errorf("embedded nats-server: cannot listen on %s:%d: %w", host, port, err)
		}
		ln.Close()
	}
	opts := &server.Options{
		ServerName: "capfilt-embedded",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   cfg.StoreDir,
		NoSigs:     true, // signals belong to the capfilt process, not to the library
		NoLog:      !cfg.Logs,
		// Jobs, states and settings are small; these caps only stop a runaway.
		JetStreamMaxMemory: 256 << 20,
		JetStreamMaxStore:  4 << 30,
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats-server: %w", err)
	}
	if cfg.Logs {
		s.ConfigureLogger()
	}
	go s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("embedded nats-server on %s:%d did not start within 30s", host, cfg.Port)
	}
	return s, nil
}
