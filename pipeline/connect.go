package pipeline

import (
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ConnectOptions are how a process reaches NATS. User and password or a token go in
// the URL (nats://user:pass@host:4222); they never appear in logs (see RedactURL).
type ConnectOptions struct {
	Name      string // the client name servers show
	CredsFile string // a .creds file (JWT + nkey seed)
	NKeyFile  string // an nkey seed file
	RootCA    string // CA file for TLS
	CertFile  string // client certificate for mutual TLS
	KeyFile   string
	// Timeout bounds the first connection (default 5s). Once connected, the client
	// reconnects for ever: a NATS restart pauses the work, it does not end it.
	Timeout time.Duration
	Log     *slog.Logger
}

// Connect connects to NATS and opens JetStream.
func Connect(serverURL string, o ConnectOptions) (*nats.Conn, jetstream.JetStream, error) {
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	opts := []nats.Option{
		nats.Name(o.Name),
		nats.Timeout(o.Timeout),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectBufSize(32 << 20),
	}
	if o.Log != nil {
		log := o.Log
		opts = append(opts,
			nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
				if err != nil {
					log.Warn("NATS disconnected", "err", err)
				}
			}),
			nats.ReconnectHandler(func(c *nats.Conn) { log.Info("NATS reconnected", "server", RedactURL(c.ConnectedUrl())) }))
	}
	if o.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(o.CredsFile))
	}
	if o.NKeyFile != "" {
		opt, err := nats.NkeyOptionFromSeed(o.NKeyFile)
		if err != nil {
			return nil, nil, fmt.Errorf("nats nkey %s: %w", o.NKeyFile, err)
		}
		opts = append(opts, opt)
	}
	if o.RootCA != "" {
		opts = append(opts, nats.RootCAs(o.RootCA))
	}
	if o.CertFile != "" || o.KeyFile != "" {
		opts = append(opts, nats.ClientCert(o.CertFile, o.KeyFile))
	}
	nc, err := nats.Connect(serverURL, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to NATS at %s: %w", RedactURL(serverURL), err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("JetStream at %s: %w", RedactURL(serverURL), err)
	}
	return nc, js, nil
}

// RedactURL hides the user information of every URL in a comma-separated server list.
func RedactURL(s string) string {
	parts := strings.Split(s, ",")
	for i, p := range parts {
		u, err := url.Parse(strings.TrimSpace(p))
		if err != nil || u.User == nil {
			continue
		}
		u.User = url.User("redacted")
		parts[i] = u.String()
	}
	return strings.Join(parts, ",")
}
