package blip

import (
	"syscall"
	"testing"
	"time"

	"github.com/capfilt/capfilt/torch"
)

// BenchmarkViTHostSettings runs ViT-B/16 at 384 px on batches of 8 and alternates, pass by
// pass, the shim's host settings: its defaults, the bulk thread class off (ops over 2^18
// elements on one thread, like the rest), the large-buffer cache off, and both off. Each
// setting's best pass and CPU time are reported with its ratio to the defaults; since the
// passes interleave, a load that comes and goes on a shared machine falls on all of them.
// Run it with -benchtime Nx: N rounds of the four.
func BenchmarkViTHostSettings(b *testing.B) {
	logMachine(b)
	m := benchBase(b)
	s := torch.NewScope()
	defer s.Close()
	px := benchPixels(s, 8, 384)
	bulk := torch.BulkThreads()
	defer torch.SetBulkThreads(bulk)
	defer torch.SetBufferCache(true)
	settings := []struct {
		name        string
		bulk        int
		bufferCache bool
	}{{"defaults", bulk, true}, {"bulk-threads-off", 1, true}, {"buffer-cache-off", bulk, false}, {"both-off", 1, false}}
	if !torch.SetBufferCache(true) {
		settings = settings[:2] // this build has no buffer cache
	}
	best := make([]time.Duration, len(settings))
	cpu := make([]float64, len(settings))
	pass := func(i int) {
		torch.SetBulkThreads(settings[i].bulk)
		torch.SetBufferCache(settings[i].bufferCache)
		st := torch.NewScope()
		defer st.Close()
		c0, t0 := cpuSeconds(), time.Now()
		var err error
		torch.NoGrad(func() { err = m.EncodeImage(st.Ref(px), false).Err() })
		if err != nil {
			b.Fatal(err)
		}
		if d := time.Since(t0); best[i] == 0 || d < best[i] {
			best[i], cpu[i] = d, cpuSeconds()-c0
		}
	}
	for i := range settings {
		pass(i) // warm-up: first touches of weights and buffers
		best[i] = 0
	}
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		for i := range settings {
			pass(i)
		}
	}
	b.StopTimer()
	for i, st := range settings {
		b.ReportMetric(best[i].Seconds(), st.name+"-s/pass")
		b.ReportMetric(cpu[i], st.name+"-cpu-s")
		if i > 0 {
			b.ReportMetric(best[i].Seconds()/best[0].Seconds(), st.name+"/defaults")
		}
	}
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}
