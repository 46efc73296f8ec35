package workers

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are a worker's Prometheus series, labelled by worker id so that the workers of
// one process (capfilt run) share a registry. A nil *Metrics records nothing.
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
}

// NewMetrics registers the worker series with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		images: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "capfilt_worker_images_total",
			Help: "Input samples processed, by outcome: accepted (kept a caption), rejected (kept none) or skipped."},
			[]string{"worker", "outcome"}),
		imagesPerSecond: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "capfilt_worker_images_per_second",
			Help: "Samples per second over the worker's last shard (rate(capfilt_worker_images_total) is the same, smoothed)."},
			[]string{"worker"}),
		batchSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "capfilt_worker_batch_seconds",
			Help: "Time the model stage took per batch (captioning and filtering).", Buckets: prometheus.ExponentialBuckets(0.01, 2, 14)},
			[]string{"worker"}),
		queueWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "capfilt_worker_queue_wait_seconds",
			Help: "Time a job waited in the queue before its first delivery.", Buckets: prometheus.ExponentialBuckets(0.1, 3, 12)},
			[]string{"worker"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "capfilt_worker_errors_total",
			Help: "Skipped samples by skip reason, and failed shard attempts (reason shard_failed)."},
			[]string{"worker", "reason"}),
		shards: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "capfilt_worker_shards_total",
			Help: "Shard attempts by outcome: done, failed, dead or handed_back (worker stopping)."},
			[]string{"worker", "outcome"}),
		batchSize: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "capfilt_worker_batch_size",
			Help: "Model batch size in use: the largest that fit the device."}, []string{"worker"}),
		oomSplits: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "capfilt_worker_oom_splits_total",
			Help: "Batches that ran out of device memory and were split."}, []string{"worker"}),
		gpuMemory: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "capfilt_worker_gpu_memory_bytes",
			Help: "CUDA memory of the worker's device: allocated, reserved and peak (libtorch's allocator), total."},
			[]string{"worker", "kind"}),
	}
	for _, c := range []prometheus.Collector{m.images, m.imagesPerSecond, m.batchSeconds, m.queueWait, m.errors,
		m.shards, m.batchSize, m.oomSplits, m.gpuMemory} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
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
