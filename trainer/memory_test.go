package trainer

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/capfilt/capfilt/internal/testutil"
	"github.com/capfilt/capfilt/synth"
	"github.com/capfilt/capfilt/torch"
)

// TestTrainMemoryHelper is the child process of TestTrainingLoopHoldsFlatMemory: 1,000
// steps of the whole loop (loader, step, log, a checkpoint at every epoch end) on blip's
// tiny preset, measured in a fresh process so what earlier tests left in the
// allocators does not blur it. It prints the tensor handles and RSS at steps 200 and
// 1,000.
func TestTrainMemoryHelper(t *testing.T) {
	if os.Getenv("CAPFILT_TRAINER_MEMORY_HELPER") == "" {
		t.Skip("helper process only")
	}
	w := testWorld(t)
	dir := t.TempDir()
	vocab := filepath.Join(dir, "vocab.txt")
	if err := os.WriteFile(vocab, []byte(strings.Join(synth.TinyVocab(), "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig(TaskPretrain)
	cfg.Data = []DataSource{{Kind: SourceWeb, Location: w.WebPattern}}
	cfg.Out = filepath.Join(dir, "run")
	cfg.Init = Init{Preset: "tiny", Vocab: vocab}
	cfg.BatchSize, cfg.QueueSize, cfg.Epochs, cfg.MaxSteps = 2, 8, 30, 1000
	cfg.Augment, cfg.Workers, cfg.LogEvery, cfg.SaveEvery, cfg.WarmupSteps = false, 1, 100, 0, 10
	var handles [2]int64
	var rss [2]int64
	start := time.Now()
	_, err := Train(context.Background(), cfg, Hooks{Progress: func(p Progress) {
		i := -1
		switch p.Step {
		case 200:
			i = 0
		case 1000:
			i = 1
		default:
			return
		}
		debug.FreeOSMemory()
		handles[i] = torch.LiveTensors()
		rss[i], _ = statusKB("VmRSS")
	}})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("TRAINER_MEMORY handles_200=%d handles_1000=%d rss_200_kb=%d rss_1000_kb=%d ms_per_step=%.1f\n",
		handles[0], handles[1], rss[0], rss[1], time.Since(start).Seconds()*1e3/1000)
}

// The training loop holds flat memory: over 800 steps after a warm-up of 200 (with
// checkpoints, epoch restarts of the loader and the log on the way) the live tensor
// handles do not change and resident memory grows by less than 3 MB.
func TestTrainingLoopHoldsFlatMemory(t *testing.T) {
	out := testutil.RunHelper(t, "TestTrainMemoryHelper", "CAPFILT_TRAINER_MEMORY_HELPER=1")
	vals := testutil.HelperValues(t, out, "TRAINER_MEMORY")
	t.Logf("handles %v → %v, RSS %.1f MB → %.1f MB from step 200 to 1000 (%v ms/step)", vals["handles_200"], vals["handles_1000"],
		vals["rss_200_kb"]/1e3, vals["rss_1000_kb"]/1e3, vals["ms_per_step"])
	if vals["handles_200"] != vals["handles_1000"] {
		t.Errorf("live tensor handles went from %v at step 200 to %v at step 1000", vals["handles_200"], vals["handles_1000"])
	}
	if grown := vals["rss_1000_kb"] - vals["rss_200_kb"]; grown > 3<<10 {
		t.Errorf("RSS grew by %.1f MB from step 200 to step 1000", grown/1e3)
	}
}

// statusKB reads a field of /proc/self/status in kB.
func statusKB(field string) (int64, error) {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("no %s in /proc/self/status", field)
}
