package main

import (
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/capfilt/capfilt/pipeline"
)

// DefaultNATSURL is where a NATS server listens by default.
const DefaultNATSURL = "nats://127.0.0.1:4222"

// natsOptions say how to reach NATS.
type natsOptions struct {
	URL                        string
	Creds, NKey, CA, Cert, Key string
}

func (o *natsOptions) AddFlags(f *pflag.FlagSet) {
	f.StringVar(&o.URL, "nats", DefaultNATSURL, "NATS server URL(s), comma-separated; user:password@ or a token may go in the URL")
	f.StringVar(&o.Creds, "nats-creds", "", "NATS credentials file (JWT and nkey seed)")
	f.StringVar(&o.NKey, "nats-nkey", "", "NATS nkey seed file")
	f.StringVar(&o.CA, "nats-ca", "", "CA certificate file for NATS over TLS")
	f.StringVar(&o.Cert, "nats-cert", "", "client certificate file for NATS mutual TLS")
	f.StringVar(&o.Key, "nats-key", "", "client key file for NATS mutual TLS")
}

// connect connects to the server. An unreachable server is a usage error: nothing was
// done.
func (o *natsOptions) connect(a *app, cmd *cobra.Command) (*nats.Conn, jetstream.JetStream, error) {
	nc, js, err := pipeline.Connect(o.URL, pipeline.ConnectOptions{Name: "capfilt " + cmd.Name(), Log: a.log,
		CredsFile: o.Creds, NKeyFile: o.NKey, RootCA: o.CA, CertFile: o.Cert, KeyFile: o.Key})
	if err != nil {
		return nil, nil, usagef("%v", err)
	}
	return nc, js, nil
}

// openQueue connects and opens the job queue; with create it makes one where there is
// none (a worker started before the first submit).
func (o *natsOptions) openQueue(a *app, cmd *cobra.Command, create bool) (*nats.Conn, *pipeline.Queue, error) {
	nc, js, err := o.connect(a, cmd)
	if err != nil {
		return nil, nil, err
	}
	q, err := pipeline.OpenQueue(cmd.Context(), js)
	if errors.Is(err, pipeline.ErrNoQueue) && create {
		q, err = pipeline.EnsureQueue(cmd.Context(), js, pipeline.QueueConfig{})
	}
	if err != nil {
		nc.Close()
		if errors.Is(err, pipeline.ErrNoQueue) || errors.Is(err, pipeline.ErrNoJetStream) {
			return nil, nil, usagef("NATS at %s: %v", pipeline.RedactURL(o.URL), err)
		}
		return nil, nil, fmt.Errorf("NATS at %s: %w", pipeline.RedactURL(o.URL), err)
	}
	return nc, q, nil
}
