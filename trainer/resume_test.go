package trainer

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/capfilt/capfilt/blip"
	"github.com/capfilt/capfilt/torch"
)

const trainHelperEnv = "CAPFILT_TRAIN_HELPER"

// TestTrainHelperProcess is the child of the kill tests: it trains the Config in
// $CAPFILT_TRAIN_HELPER, printing "STEP n" after every step, and at step
// $CAPFILT_TRAIN_PAUSE_AT it waits to be killed. Started as a rank of a job (RANK etc.
// set) it joins the job's process group first.
func TestTrainHelperProcess(t *testing.T) {
	raw := os.Getenv(trainHelperEnv)
	if raw == "" {
		t.Skip("helper process only")
	}
	var cfg Config
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		t.Fatal(err)
	}
	var pauseAt int
	fmt.Sscan(os.Getenv("CAPFILT_TRAIN_PAUSE_AT"), &pauseAt)
	if env, err := torch.DistEnvFromEnv(); err == nil {
		pg, err := torch.NewProcessGroup(torch.DistConfig{DistEnv: env, Timeout: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer pg.Close()
		cfg.Dist = pg
	} else if !errors.Is(err, torch.ErrNoDistEnv) {
		t.Fatal(err)
	}
	_, err := Train(context.Background(), cfg, Hooks{Progress: func(p Progress) {
		fmt.Printf("STEP %d\n", p.Step)
		if p.Step == pauseAt {
			time.Sleep(time.Minute)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
}

// startTrainHelper runs cfg in a child process and returns it with a channel of the
// steps it reports.
func startTrainHelper(t *testing.T, cfg Config, pauseAt int) (*exec.Cmd, <-chan int) {
	t.Helper()
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestTrainHelperProcess$", "-test.v")
	cmd.Env = append(os.Environ(), trainHelperEnv+"="+string(raw), fmt.Sprintf("CAPFILT_TRAIN_PAUSE_AT=%d", pauseAt))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	steps := make(chan int, 100)
	go func() {
		defer close(steps)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var n int
			if _, err := fmt.Sscanf(sc.Text(), "STEP %d", &n); err == nil {
				steps <- n
			}
		}
	}()
	return cmd, steps
}

// A training run killed with SIGKILL between checkpoints and resumed ends with weights,
// momentum model and queues bit for bit those of a run never stopped: optimizer state,
// every random state (dropout, hard negatives), the data position (mid-epoch, with
// augmentation) all come back. The resume crosses an epoch boundary.
func TestKilledRunResumesBitIdentical(t *testing.T) {
	dir := t.TempDir()
	cfg := tinyConfig(t, TaskPretrain, filepath.Join(dir, "straight"))
	cfg.Augment, cfg.MinScale, cfg.Dropout = true, 0.5, 0.1
	cfg.SaveEvery, cfg.MaxSteps, cfg.LogEvery = 5, 16, 1
	if _, err := Train(context.Background(), cfg, Hooks{}); err != nil {
		t.Fatal(err)
	}

	killed := cfg
	killed.Out = filepath.Join(dir, "killed")
	cmd, steps := startTrainHelper(t, killed, 7)
	for n := range steps {
		if n == 7 {
			break
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die of SIGKILL: %v", err)
	}
	ck, err := latestCheckpoint(killed.Out)
	if err != nil {
		t.Fatal(err)
	}
	if ck.state.Step != 5 || ck.state.EpochStep != 5 {
		t.Fatalf("killed run's last checkpoint is at step %d (epoch step %d), want 5", ck.state.Step, ck.state.EpochStep)
	}

	resumed := killed
	resumed.Resume = true
	res, err := Train(context.Background(), resumed, Hooks{})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Resumed || res.Steps != 16 || res.History[0].Step != 6 {
		t.Fatalf("resumed run: resumed %v, %d steps, first logged step %d", res.Resumed, res.Steps, res.History[0].Step)
	}
	for _, f := range []string{modelFile, filepath.Join(stateDirName, "step-000000016", objectiveFile)} {
		assertSameTensors(t, filepath.Join(cfg.Out, f), filepath.Join(killed.Out, f))
	}
	// The log holds each step once: the killed run's steps 6 and 7 were dropped on resume.
	data, err := os.ReadFile(filepath.Join(killed.Out, trainLogName))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(data), "\n"); n != 16 {
		t.Errorf("train log has %d records, want 16:\n%s", n, data)
	}
}

func assertSameTensors(t *testing.T, a, b string) {
	t.Helper()
	ta, err := blip.ReadTensors(a)
	if err != nil {
		t.Fatal(err)
	}
	tb, err := blip.ReadTensors(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(ta) != len(tb) || len(ta) == 0 {
		t.Fatalf("%s has %d tensors, %s %d", a, len(ta), b, len(tb))
	}
	differ := 0
	for name, x := range ta {
		y, ok := tb[name]
		if !ok {
			t.Fatalf("%s lacks %s", b, name)
		}
		if !bitEqual(t, x, y) {
			differ++
			t.Errorf("%s differs after the resume", name)
		}
		x.Free()
		y.Free()
	}
	if differ == 0 {
		t.Logf("%s: %d tensors bit-identical", filepath.Base(a), len(ta))
	}
}

// bitEqual compares two float32 or int64 tensors value for value, exactly.
func bitEqual(t *testing.T, x, y *torch.Tensor) bool {
	t.Helper()
	if x.DType() == torch.Int64 {
		a, err := x.Int64s()
		if err != nil {
			t.Fatal(err)
		}
		b, err := y.Int64s()
		if err != nil {
			t.Fatal(err)
		}
		return slices.Equal(a, b)
	}
	a, err := x.Float32s()
	if err != nil {
		t.Fatal(err)
	}
	b, err := y.Float32s()
	if err != nil {
		t.Fatal(err)
	}
	return slices.Equal(a, b)
}
