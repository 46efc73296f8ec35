package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/capfilt/capfilt/workers"
)

// metricsSite is what --metrics-addr serves:
//
//	/metrics  Prometheus series (workers.Metrics, the Go runtime, the process)
//	/healthz  200 while the process serves: what a container healthcheck asks
//	/readyz   200 when every readiness check passes (capfilt worker: NATS connected and
//	          a model loaded), else 503 naming the ones that fail
type metricsSite struct {
	metrics *workers.Metrics
	addr    string
	srv     *http.Server

	mu     sync.Mutex
	checks []readyCheck
}

// readyCheck is one condition of readiness: nil when it holds, else why not.
type readyCheck struct {
	name  string
	check func() error
}

// serveMetrics starts serving when --metrics-addr is set (nil otherwise); the address
// is taken at once, so a port in use is a usage error.
func (o *workerOptions) serveMetrics(a *app) (*metricsSite, error) {
	if o.MetricsAddr == "" {
		return nil, nil
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m, err := workers.NewMetrics(reg)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", o.MetricsAddr)
	if err != nil {
		return nil, a.bad("metrics-addr", o.MetricsAddr, err.Error())
	}
	site := &metricsSite{metrics: m, addr: ln.Addr().String()}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.Gatherer(reg), promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", site.ready)
	site.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := site.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("metrics server", "err", err)
		}
	}()
	a.log.Info("serving metrics", "addr", site.addr)
	return site, nil
}

// addCheck adds a readiness condition (checks are added as what they ask of exists).
func (s *metricsSite) addCheck(name string, check func() error) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checks = append(s.checks, readyCheck{name, check})
}

func (s *metricsSite) ready(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	checks := append([]readyCheck(nil), s.checks...)
	s.mu.Unlock()
	var lines []string
	ok := true
	for _, c := range checks {
		if err := c.check(); err != nil {
			ok = false
			lines = append(lines, c.name+": "+err.Error())
		} else {
			lines = append(lines, c.name+": ok")
		}
	}
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	if len(lines) == 0 {
		lines = []string{"ok"}
	}
	fmt.Fprintln(w, strings.Join(lines, "\n"))
}

func (s *metricsSite) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s.srv.Shutdown(ctx)
}
