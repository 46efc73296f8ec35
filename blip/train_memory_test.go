package blip

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"testing"
	"time"

	"github.com/capfilt/capfilt/internal/testutil"
	"github.com/capfilt/capfilt/torch"
)

// TestTrainingMemoryHelper is the child process of TestTrainingStepsHoldFlatMemory, so
// that what earlier tests left in the allocators does not blur the measurement. It runs
// training steps on one OS thread (glibc gives each thread that calls into libtorch its
// own malloc arena, which grows resident memory by a few MB over the first few hundred
// steps of a goroutine that wanders between threads, then stops: measured +5 MB by step
// 600, flat to 1600) and prints the handles one step leaves and the RSS before and after.
func TestTrainingMemoryHelper(t *testing.T) {
	if os.Getenv("CAPFILT_TRAIN_MEMORY_HELPER") == "" {
		t.Skip("helper process only")
	}
	const warm, steps = 60, 200
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cfg := Tiny()
	cfg.Text.Dropout = 0.1
	r := newPretrainRig(t, cfg, 2, 8, 8, 3)
	for i := 0; i < warm; i++ {
		r.step(t, true, 0.4)
	}
	runtime.GC()
	runtime.GC()
	time.Sleep(20 * time.Millisecond)
	old := debug.SetGCPercent(-1)
	handles := torch.LiveTensors()
	r.step(t, true, 0.4)
	leaked := torch.LiveTensors() - handles
	debug.SetGCPercent(old)
	debug.FreeOSMemory()
	before, err := statusKB("VmRSS")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for i := 0; i < steps; i++ {
		r.step(t, true, 0.4)
	}
	debug.FreeOSMemory()
	after, _ := statusKB("VmRSS")
	fmt.Printf("TRAIN_MEMORY leaked_handles=%d rss_before_kb=%d rss_after_kb=%d steps=%d ms_per_step=%.0f\n",
		leaked, before, after, steps, time.Since(start).Seconds()*1e3/steps)
}

// A training loop holds flat memory: every step frees every tensor handle it makes
// (deterministically, by its scope: the count is exact with the garbage collector off)
// and resident memory does not grow with the steps.
func TestTrainingStepsHoldFlatMemory(t *testing.T) {
	out := testutil.RunHelper(t, "TestTrainingMemoryHelper", "CAPFILT_TRAIN_MEMORY_HELPER=1")
	vals := testutil.HelperValues(t, out, "TRAIN_MEMORY")
	before, after := vals["rss_before_kb"], vals["rss_after_kb"]
	t.Logf("RSS %.1f MB before, %.1f MB after %v training steps (%v ms/step); one step left %v tensor handles",
		before/1e3, after/1e3, vals["steps"], vals["ms_per_step"], vals["leaked_handles"])
	if vals["leaked_handles"] != 0 {
		t.Errorf("one training step left %v tensor handles alive", vals["leaked_handles"])
	}
	if after-before > 2<<10 {
		t.Errorf("RSS grew by %.1f MB over %v training steps", (after-before)/1e3, vals["steps"])
	}
}
