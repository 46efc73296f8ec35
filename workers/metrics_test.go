package workers_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/capfilt/capfilt/pipeline"
	"github.com/capfilt/capfilt/shards"
	"github.com/capfilt/capfilt/workers"
)

// Every family a worker process exports: what dashboards and the rules may read.
var metricFamilies = []string{
	"capfilt_worker_images_total", "capfilt_worker_images_per_second", "capfilt_worker_batch_seconds",
	"capfilt_worker_queue_wait_seconds", "capfilt_worker_errors_total", "capfilt_worker_shards_total",
	"capfilt_worker_batch_size", "capfilt_worker_oom_splits_total", "capfilt_worker_gpu_memory_bytes",
	"capfilt_run_samples_read_total", "capfilt_run_images_total", "capfilt_run_samples_skipped_total",
	"capfilt_run_captions_total", "capfilt_run_itm_score", "capfilt_run_itc_score", "capfilt_run_jobs_queued",
	"capfilt_queue_up", "capfilt_queue_jobs", "capfilt_queue_jobs_undelivered", "capfilt_queue_jobs_in_flight",
	"capfilt_queue_jobs_redelivered",
}

// scrape GETs /metrics and parses it with the Prometheus client's own text parser, which
// refuses what breaks the exposition format.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics breaks the exposition format: %v", err)
	}
	return fams
}

// value is the sample of a family whose labels include want; histograms give their count.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	t.Helper()
	var sum float64
	found := false
	for _, m := range fams[name].GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		match := true
		for k, v := range want {
			if labels[k] != v {
				match = false
			}
		}
		if !match {
			continue
		}
		found = true
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		}
	}
	if !found {
		t.Fatalf("%s has no series with labels %v", name, want)
	}
	return sum
}

// failOnce fails the second batch the model stage sees, once: that shard's first attempt
// fails after it has written rows.
type failOnce struct {
	workers.LabelerSource
	calls *atomic.Int32
}

func (f failOnce) Labeler(ctx context.Context, rs pipeline.RunSettings) (workers.Labeler, error) {
	l, err := f.LabelerSource.Labeler(ctx, rs)
	return failOnceLabeler{l, f.calls}, err
}

type failOnceLabeler struct {
	workers.Labeler
	calls *atomic.Int32
}

func (l failOnceLabeler) Label(ctx context.Context, b workers.Batch) ([]workers.Labels, error) {
	if l.calls.Add(1) == 2 {
		return nil, errors.New("injected: the device went away")
	}
	return l.Labeler.Label(ctx, b)
}

// Every series exists at zero before the first shard (so rate() sees the first event),
// the queue's gauges show the submitted jobs, and after the run the run's counters add
// up to its manifest and stats, though one shard failed part-way and was redone.
func TestMetricsExistAtZeroBeforeTheFirstShardAndAddUpToTheRun(t *testing.T) {
	w := newWorld(t)
	w.shards(t, 2, 8)
	writeTar(t, filepath.Join(w.in, "bad.tar"), []member{ // a skipped sample for certain
		{"a.jpg", encodedScene(t, false, "red")}, {"a.txt", []byte("a red circle")},
		{"b.jpg", []byte("not an image")}, {"b.txt", []byte("junk")}})
	reg := prometheus.NewRegistry()
	m, err := workers.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(promhttp.HandlerFor(m.Gatherer(reg), promhttp.HandlerOpts{}))
	defer srv.Close()
	wk, err := workers.New(w.q, workers.Config{ID: "m0", Models: failOnce{w.src, new(atomic.Int32)}, Store: w.store, BatchSize: 4, DecodeWorkers: 2,
		FetchWait: 200 * time.Millisecond, Finisher: w.coord, Metrics: m, Version: "test",
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	rs := w.settings(t, "metered")
	w.submit(t, rs)

	fams := scrape(t, srv.URL)
	var names []string
	for name := range fams {
		names = append(names, name)
	}
	sort.Strings(names)
	want := slices.Sorted(slices.Values(metricFamilies))
	if !slices.Equal(names, want) {
		t.Fatalf("families before the first shard:\n%v\nwant\n%v", names, want)
	}
	gauges := map[string]float64{"capfilt_queue_up": 1, "capfilt_queue_jobs": 3, "capfilt_queue_jobs_undelivered": 3,
		"capfilt_run_jobs_queued": 3}
	for name, f := range fams {
		if len(f.GetMetric()) == 0 {
			t.Errorf("%s has no series", name)
		}
		for _, s := range f.GetMetric() {
			v := s.GetCounter().GetValue() + s.GetGauge().GetValue() + float64(s.GetHistogram().GetSampleCount())
			if v != gauges[name] {
				t.Errorf("%s%v = %v before the first shard, want %v", name, s.GetLabel(), v, gauges[name])
			}
		}
	}
	for _, reason := range []string{shards.SkipCorruptImage, shards.SkipTooManyPixels, shards.SkipMissingCaption} {
		value(t, fams, "capfilt_run_samples_skipped_total", map[string]string{"run": "metered", "reason": reason})
		value(t, fams, "capfilt_worker_errors_total", map[string]string{"worker": "m0", "reason": reason})
	}
	for _, src := range shards.CaptionSources {
		value(t, fams, "capfilt_run_itm_score", map[string]string{"run": "metered", "source": src})
		value(t, fams, "capfilt_run_captions_total", map[string]string{"run": "metered", "source": src, "decision": "rejected"})
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); wk.Run(ctx) }()
	defer func() { cancel(); <-done }()
	w.waitComplete(t, "metered", 60*time.Second)
	man := w.checkOutputs(t, "metered", rs.Output, 3)
	tot := man.Totals
	if tot.Skipped == 0 || tot.Accepted == 0 || tot.Rejected == 0 {
		t.Fatalf("totals %+v: want every outcome", tot)
	}
	captions := map[[2]string]int64{}
	for _, s := range man.Shards {
		st, err := shards.ReadStats(context.Background(), w.store, mustURL(t, s.Stats))
		if err != nil {
			t.Fatal(err)
		}
		for src, c := range st.Captions {
			captions[[2]string{src, "accepted"}] += c.Accepted
			captions[[2]string{src, "rejected"}] += c.Rejected
		}
	}

	fams = scrape(t, srv.URL)
	run := map[string]string{"run": "metered"}
	for _, c := range []struct {
		got  float64
		want int64
		what string
	}{
		{value(t, fams, "capfilt_run_samples_read_total", run), tot.Read, "read"},
		{value(t, fams, "capfilt_run_images_total", map[string]string{"run": "metered", "outcome": "accepted"}), tot.Accepted, "accepted"},
		{value(t, fams, "capfilt_run_images_total", map[string]string{"run": "metered", "outcome": "rejected"}), tot.Rejected, "rejected"},
		{value(t, fams, "capfilt_run_samples_skipped_total", run), tot.Skipped, "skipped"},
		{value(t, fams, "capfilt_worker_shards_total", map[string]string{"worker": "m0", "outcome": "done"}), 3, "shards done"},
		{value(t, fams, "capfilt_worker_shards_total", map[string]string{"worker": "m0", "outcome": "failed"}), 1, "attempts failed"},
		{value(t, fams, "capfilt_run_jobs_queued", run), 0, "jobs left"},
		{value(t, fams, "capfilt_queue_jobs", nil), 0, "jobs in the stream"},
	} {
		if c.got != float64(c.want) {
			t.Errorf("%s: metrics say %v, the run %d", c.what, c.got, c.want)
		}
	}
	if got := value(t, fams, "capfilt_worker_images_total", map[string]string{"worker": "m0"}); got <= float64(tot.Read) {
		t.Errorf("the worker counted %v samples, the run %d: its failed attempt's samples count there", got, tot.Read)
	}
	for _, src := range shards.CaptionSources {
		scored := captions[[2]string{src, "accepted"}] + captions[[2]string{src, "rejected"}]
		for _, d := range []string{"accepted", "rejected"} {
			if got := value(t, fams, "capfilt_run_captions_total", map[string]string{"run": "metered", "source": src, "decision": d}); got != float64(captions[[2]string{src, d}]) {
				t.Errorf("%s captions %s: metrics %v, stats %d", src, d, got, captions[[2]string{src, d}])
			}
		}
		if got := value(t, fams, "capfilt_run_itm_score", map[string]string{"run": "metered", "source": src}); got != float64(scored) {
			t.Errorf("%s ITM histogram holds %v scores, stats %d", src, got, scored)
		}
	}
	if captions[[2]string{shards.SourceWeb, "accepted"}]+captions[[2]string{shards.SourceWeb, "rejected"}] == 0 {
		t.Fatal("no web caption was scored")
	}
}
