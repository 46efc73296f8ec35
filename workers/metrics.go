package workers

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/capfilt/capfilt/pipeline"
	"github.com/capfilt/capfilt/shards"
)

// Metrics are a process's Prometheus series: the workers' (labelled by worker id, so
// that the workers of one process, capfilt run, share a registry), the runs' (labelled
// by run) and the queue's. Every series a worker or a run will touch exists at zero
// before its first event, so that rate() and increase() see the first one; a run's
// series appear as soon as its jobs are in the queue. Worker series count as samples
// go by, every attempt; run series count each shard once, when it is published, so
// they agree with the run's stats and manifest. A nil *Metrics records nothing.
type Metrics struct {
	images          *prometheus.CounterVec
	imagesPerSecond *prometheus.GaugeVec
	batchSeconds    *prometheus.HistogramVec
	queueWait       *prometheus.HistogramVec
	errors          *prometheus.CounterVec
	shards          *prometheus.CounterVec
	batchSize       *prometheus.GaugeVec
	oomSplits       *prometheus.CounterVec
	gpuMemory       *prometheus.GaugeVec

	run runFamilies
	q   queueGauges

	mu      sync.Mutex
	queue   QueueStatser
	runs    map[string]*runSeries
	workers map[string]bool
}

// runFamilies are the per-run series.
type runFamilies struct {
	read     *prometheus.CounterVec
	images   *prometheus.CounterVec
	skipped  *prometheus.CounterVec
	captions *prometheus.CounterVec
	itm      *prometheus.HistogramVec
	itc      *prometheus.HistogramVec
	queued   *prometheus.GaugeVec
}

// queueGauges describe the job stream and the workers' consumer as NATS reports them.
type queueGauges struct {
	up, jobs, undelivered, inFlight, redelivered prometheus.Gauge
}

// QueueStatser reads the queue's counts (pipeline.Queue does).
type QueueStatser interface {
	Stats(ctx context.Context) (pipeline.QueueStats, error)
}

// Label values every worker series starts with.
var (
	imageOutcomes = []string{"accepted", "rejected", "skipped"}
	shardOutcomes = []string{"done", "failed", "dead", "handed_back"}
	memoryKinds   = []string{"allocated", "reserved", "peak", "total"}
	// skipReasons are the reasons a sample is skipped for (shards.Skip*).
	skipReasons = []string{shards.SkipMissingImage, shards.SkipMissingCaption, shards.SkipEmptyCaption,
		shards.SkipNonUTF8Caption, shards.SkipMemberTooLarge, shards.SkipUnsafePath, shards.SkipUnsupportedMember,
		shards.SkipBadMetadata, shards.SkipTooManyCaptions, shards.SkipTruncatedMember, shards.SkipDuplicateKey,
		shards.SkipCorruptImage, shards.SkipTooManyPixels}
	captionDecisions = []string{"accepted", "rejected"}
)

// errShardFailed is the errors reason of a failed shard attempt.
const errShardFailed = "shard_failed"

// NewMetrics registers the series with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	}
	gauge := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
	}
	m := &Metrics{
		images: counter("capfilt_worker_images_total",
			"Input samples processed, by outcome: accepted (kept a caption), rejected (kept none) or skipped.", "worker", "outcome"),
		imagesPerSecond: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "capfilt_worker_images_per_second",
			Help: "Samples per second over the worker's last shard (rate(capfilt_worker_images_total) is the same, smoothed)."},
			[]string{"worker"}),
		batchSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "capfilt_worker_batch_seconds",
			Help: "Time the model stage took per batch (captioning and filtering).", Buckets: prometheus.ExponentialBuckets(0.01, 2, 14)},
			[]string{"worker"}),
		queueWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "capfilt_worker_queue_wait_seconds",
			Help: "Time a job waited in the queue before its first delivery.", Buckets: prometheus.ExponentialBuckets(0.1, 3, 12)},
			[]string{"worker"}),
		errors: counter("capfilt_worker_errors_total",
			"Skipped samples by skip reason, and failed shard attempts (reason shard_failed).", "worker", "reason"),
		shards: counter("capfilt_worker_shards_total",
			"Shard attempts by outcome: done, failed, dead or handed_back (worker stopping).", "worker", "outcome"),
		batchSize: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "capfilt_worker_batch_size",
			Help: "Model batch size in use: the largest that fit the device."}, []string{"worker"}),
		oomSplits: counter("capfilt_worker_oom_splits_total", "Batches that ran out of device memory and were split.", "worker"),
		gpuMemory: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "capfilt_worker_gpu_memory_bytes",
			Help: "CUDA memory of the worker's device: allocated, reserved and peak (libtorch's allocator), total; 0 off a GPU."},
			[]string{"worker", "kind"}),
		run: runFamilies{
			read: counter("capfilt_run_samples_read_total",
				"Input samples of the run's published shards (= accepted + rejected images + skipped samples); a shard counts once it is published.", "run"),
			images: counter("capfilt_run_images_total",
				"Scored images of the run's published shards by outcome: accepted (kept a caption, a row of the output) or rejected.", "run", "outcome"),
			skipped: counter("capfilt_run_samples_skipped_total", "Samples of the run's published shards skipped, by reason.", "run", "reason"),
			captions: counter("capfilt_run_captions_total",
				"Scored captions of the run's published shards by source (web, human, synthetic) and the accept rule's decision.", "run", "source", "decision"),
			itm: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "capfilt_run_itm_score",
				Help:    "ITM match probability of every scored caption of the run, by source: what itm-threshold cuts.",
				Buckets: prometheus.LinearBuckets(0.05, 0.05, 20)}, []string{"run", "source"}),
			itc: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "capfilt_run_itc_score",
				Help:    "ITC cosine of every scored caption of the run, by source: what itc-threshold cuts.",
				Buckets: prometheus.LinearBuckets(-0.9, 0.1, 20)}, []string{"run", "source"}),
			queued: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "capfilt_run_jobs_queued",
				Help: "Jobs of the run in the stream (queued, running or waiting for a retry), as of the last scrape."}, []string{"run"}),
		},
		q: queueGauges{
			up: gauge("capfilt_queue_up", "1 when the last scrape read the queue's counts from NATS, 0 when it could not (the counts are then the last read)."),
			jobs: gauge("capfilt_queue_jobs",
				"Jobs in the stream, every run: queued, running or waiting for a retry (a job leaves it once acked or dead)."),
			undelivered: gauge("capfilt_queue_jobs_undelivered", "Jobs no worker has been given yet."),
			inFlight:    gauge("capfilt_queue_jobs_in_flight", "Jobs delivered to a worker and not yet acknowledged."),
			redelivered: gauge("capfilt_queue_jobs_redelivered",
				"Jobs delivered more than once and not yet acknowledged (a worker was lost, or an attempt failed)."),
		},
		runs:    map[string]*runSeries{},
		workers: map[string]bool{},
	}
	r := m.run
	for _, c := range []prometheus.Collector{m.images, m.imagesPerSecond, m.batchSeconds, m.queueWait, m.errors,
		m.shards, m.batchSize, m.oomSplits, m.gpuMemory, r.read, r.images, r.skipped, r.captions, r.itm, r.itc, r.queued,
		m.q.up, m.q.jobs, m.q.undelivered, m.q.inFlight, m.q.redelivered} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// AddWorker makes every series of a worker, at zero, and reads the queue's counts from
// q (at each scrape through Gatherer) unless it already has a queue to read.
func (m *Metrics) AddWorker(id string, q QueueStatser) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.queue == nil {
		m.queue = q
	}
	if m.workers[id] {
		return
	}
	m.workers[id] = true
	for _, o := range imageOutcomes {
		m.images.WithLabelValues(id, o)
	}
	for _, r := range append(skipReasons, errShardFailed) {
		m.errors.WithLabelValues(id, r)
	}
	for _, o := range shardOutcomes {
		m.shards.WithLabelValues(id, o)
	}
	for _, k := range memoryKinds {
		m.gpuMemory.WithLabelValues(id, k)
	}
	m.imagesPerSecond.WithLabelValues(id)
	m.batchSeconds.WithLabelValues(id)
	m.queueWait.WithLabelValues(id)
	m.batchSize.WithLabelValues(id)
	m.oomSplits.WithLabelValues(id)
}

// Gatherer is g, reading the queue's counts first, so a scrape shows them as they are.
func (m *Metrics) Gatherer(g prometheus.Gatherer) prometheus.Gatherer {
	return prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		m.refreshQueue(ctx)
		return g.Gather()
	})
}

func (m *Metrics) refreshQueue(ctx context.Context) {
	if m == nil {
		return
	}
	m.mu.Lock()
	q := m.queue
	m.mu.Unlock()
	if q == nil {
		return
	}
	st, err := q.Stats(ctx)
	if err != nil {
		m.q.up.Set(0)
		return
	}
	m.q.up.Set(1)
	m.q.jobs.Set(float64(st.Jobs))
	m.q.undelivered.Set(float64(st.Undelivered))
	m.q.inFlight.Set(float64(st.InFlight))
	m.q.redelivered.Set(float64(st.Redelivered))
	for run, n := range st.JobsByRun {
		m.forRun(run)
		m.run.queued.WithLabelValues(run).Set(float64(n))
	}
	m.mu.Lock()
	known := make([]string, 0, len(m.runs))
	for run := range m.runs {
		known = append(known, run)
	}
	m.mu.Unlock()
	for _, run := range known {
		if _, queued := st.JobsByRun[run]; !queued {
			m.run.queued.WithLabelValues(run).Set(0)
		}
	}
}

// runSeries are one run's series, looked up once.
type runSeries struct {
	read               prometheus.Counter
	accepted, rejected prometheus.Counter
	skipped            map[string]prometheus.Counter
	captions           map[[2]string]prometheus.Counter // (source, decision)
	itm, itc           map[string]prometheus.Observer
	f                  *runFamilies
	run                string
	mu                 sync.Mutex // over skipped, for reasons the list does not know (the workers of a process share it)
}

// forRun returns a run's series, making them at zero the first time.
func (m *Metrics) forRun(run string) *runSeries {
	if m == nil {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if s, ok := m.runs[run]; ok {
		return s
	}
	f := &m.run
	s := &runSeries{read: f.read.WithLabelValues(run), accepted: f.images.WithLabelValues(run, "accepted"),
		rejected: f.images.WithLabelValues(run, "rejected"), skipped: map[string]prometheus.Counter{},
		captions: map[[2]string]prometheus.Counter{}, itm: map[string]prometheus.Observer{}, itc: map[string]prometheus.Observer{},
		f: f, run: run}
	for _, r := range skipReasons {
		s.skipped[r] = f.skipped.WithLabelValues(run, r)
	}
	for _, src := range shards.CaptionSources {
		for _, d := range captionDecisions {
			s.captions[[2]string{src, d}] = f.captions.WithLabelValues(run, src, d)
		}
		s.itm[src] = f.itm.WithLabelValues(run, src)
		s.itc[src] = f.itc.WithLabelValues(run, src)
	}
	f.queued.WithLabelValues(run)
	m.runs[run] = s
	return s
}

// scoreLog holds the scores of one shard attempt's captions, by source, until the
// shard is published.
type scoreLog struct{ itm, itc map[string][]float32 }

func (l *scoreLog) add(c shards.Caption) {
	if l.itm == nil {
		l.itm, l.itc = map[string][]float32{}, map[string][]float32{}
	}
	l.itm[c.Source] = append(l.itm[c.Source], c.ITM)
	l.itc[c.Source] = append(l.itc[c.Source], c.ITC)
}

// shardPublished adds a published shard's counts (its stats) and scores to the run's
// series. A run's series count each shard once, when its outputs are published, so that
// they agree with its stats files and manifest: a failed attempt adds nothing (a shard
// redone by capfilt retry adds again).
func (s *runSeries) shardPublished(st *shards.ShardStats, scores *scoreLog) {
	if s == nil {
		return
	}
	s.read.Add(float64(st.SamplesRead))
	s.accepted.Add(float64(st.ImagesKept))
	s.rejected.Add(float64(st.ImagesRejected))
	s.mu.Lock()
	for reason, n := range st.Skipped {
		c, ok := s.skipped[reason]
		if !ok {
			c = s.f.skipped.WithLabelValues(s.run, reason)
			s.skipped[reason] = c
		}
		c.Add(float64(n))
	}
	s.mu.Unlock()
	for src, c := range st.Captions {
		if acc, ok := s.captions[[2]string{src, "accepted"}]; ok {
			acc.Add(float64(c.Accepted))
			s.captions[[2]string{src, "rejected"}].Add(float64(c.Rejected))
		}
	}
	for src, vs := range scores.itm {
		if h, ok := s.itm[src]; ok {
			for _, v := range vs {
				h.Observe(float64(v))
			}
		}
	}
	for src, vs := range scores.itc {
		if h, ok := s.itc[src]; ok {
			for _, v := range vs {
				h.Observe(float64(v))
			}
		}
	}
}

func (m *Metrics) countImages(worker, outcome string, n int) {
	if m != nil && n > 0 {
		m.images.WithLabelValues(worker, outcome).Add(float64(n))
	}
}

func (m *Metrics) countError(worker, reason string) {
	if m != nil {
		m.errors.WithLabelValues(worker, reason).Inc()
	}
}

func (m *Metrics) observeBatch(worker string, d time.Duration, size int) {
	if m != nil {
		m.batchSeconds.WithLabelValues(worker).Observe(d.Seconds())
		m.batchSize.WithLabelValues(worker).Set(float64(size))
	}
}

func (m *Metrics) countSplits(worker string, n int) {
	if m != nil && n > 0 {
		m.oomSplits.WithLabelValues(worker).Add(float64(n))
	}
}

func (m *Metrics) observeQueueWait(worker string, d time.Duration) {
	if m != nil {
		m.queueWait.WithLabelValues(worker).Observe(d.Seconds())
	}
}

func (m *Metrics) shardFinished(worker, outcome string, images int64, d time.Duration) {
	if m == nil {
		return
	}
	m.shards.WithLabelValues(worker, outcome).Inc()
	if outcome == "done" && d > 0 {
		m.imagesPerSecond.WithLabelValues(worker).Set(float64(images) / d.Seconds())
	}
}

// DeviceMemory is what a Labeler on a GPU reports of its device's memory.
type DeviceMemory interface {
	// MemoryStats returns bytes by kind (allocated, reserved, peak, total); ok is false
	// off a GPU.
	MemoryStats() (stats map[string]int64, ok bool)
}

func (m *Metrics) observeMemory(worker string, lab Labeler) {
	if m == nil {
		return
	}
	dm, ok := lab.(DeviceMemory)
	if !ok {
		return
	}
	stats, ok := dm.MemoryStats()
	if !ok {
		return
	}
	for kind, v := range stats {
		m.gpuMemory.WithLabelValues(worker, kind).Set(float64(v))
	}
}
