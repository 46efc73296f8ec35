package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/capfilt/capfilt/synth"
	"github.com/capfilt/capfilt/torch"
	"github.com/capfilt/capfilt/trainer"
)

func newBenchTrainCommand(a *app) *cobra.Command {
	var cases, twin, processes string
	var steps, workers int
	cmd := &cobra.Command{
		Use:   "train [--bench-cases tiny,base224] [--bench-steps 10] [--twin testdata/ref/bench_train.py] [--bench-processes 1,2]",
		Short: "Training images/s for tiny and base on this machine, the share of step time waiting for data, and the ratio to PyTorch eager",
		Long: `Runs the pretraining loop (the data loader on sample shards of 256 px images with BLIP's train
transform, tokenising, ITC + ITM + LM with a queue of 57600, backward, AdamW) for each case:
tiny (the tiny preset at 64 px, 8 images per step) and base224 (ViT-B/16 and BERT-base at 224
px, 2 images per step), dropout off. It prints images/s over the measured steps (waits
included), the mean and fastest step without its data wait, and the share of wall time the
steps waited for a batch (target: under 5%).

With --twin (testdata/ref/bench_train.py, run by /usr/bin/python3 with Debian's python3-torch)
the same step runs in PyTorch eager on the same libtorch threads, and the ratio of its
seconds per step to capfilt's is printed (above 1: capfilt is faster).

With --bench-processes (e.g. 1,2) the tiny step also runs data-parallel: capfilt train
--nproc-per-node N (Gloo over loopback), batch 8 per process, each process with its share of
the CPUs as tensor threads; it prints images/s of the job, its ratio to the first count's, and
the share of step time spent waiting for the gradient all-reduce after backward.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if steps < 1 {
				return a.bad("bench-steps", steps, "must be at least 1")
			}
			byName := map[string]trainer.BenchCase{}
			for _, c := range trainer.DefaultBenchCases() {
				byName[c.Name] = c
			}
			var picked []trainer.BenchCase
			for _, n := range strings.Split(cases, ",") {
				c, ok := byName[strings.TrimSpace(n)]
				if !ok {
					return a.bad("bench-cases", quote(cases), "want a list of tiny and base224")
				}
				picked = append(picked, c)
			}
			blas, _ := torch.BLASInfo()
			a.printf("capfilt %s bench train: %d CPUs, libtorch %s, %d intra-op threads, %d BLAS threads\n", capfiltVersion(),
				runtime.NumCPU(), torch.Version(), torch.NumThreads(), torch.BLASThreads())
			a.printf("blas: %s\n", blas)
			for _, c := range picked {
				res, err := trainer.BenchTrain(cmd.Context(), trainer.BenchConfig{Cases: []trainer.BenchCase{c}, Steps: steps, Workers: workers})
				if err != nil {
					return err
				}
				r := res[0]
				line := fmt.Sprintf("%-8s B=%d %3dpx: %7.2f images/s, step %.4f s (fastest %.4f s), data wait %.1f%% of step time",
					c.Name, c.Batch, c.ImageSize, r.ImagesPerSec, r.StepSeconds, r.FastestStep, 100*r.WaitShare)
				if twin != "" {
					py, err := runTwin(cmd, twin, c, steps)
					if err != nil {
						return err
					}
					line += fmt.Sprintf("; PyTorch eager %.4f s/step (fastest %.4f s): ratio %.2f (fastest %.2f)", py.mean, py.fastest,
						py.mean/r.StepSeconds, py.fastest/r.FastestStep)
				}
				a.printf("%s\n", line)
			}
			var first float64
			for _, p := range strings.Split(processes, ",") {
				if p = strings.TrimSpace(p); p == "" {
					continue
				}
				n, err := strconv.Atoi(p)
				if err != nil || n < 1 {
					return a.bad("bench-processes", quote(processes), "want process counts like 1,2")
				}
				rate, share, err := a.benchProcesses(cmd, n, steps)
				if err != nil {
					return err
				}
				if first == 0 {
					first = rate
				}
				a.printf("tiny data-parallel, %d process(es) x B=8, --threads %d each: %7.2f images/s (x%.2f), all-reduce wait %.1f%% of step time\n",
					n, benchThreads(n), rate, rate/first, 100*share)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cases, "bench-cases", "tiny,base224", "cases to run: tiny (64 px, batch 8), base224 (ViT-B/BERT-base at 224 px, batch 2)")
	f.IntVar(&steps, "bench-steps", 10, "measured steps per case (after 2 warm-up steps)")
	f.StringVar(&twin, "twin", "", "PyTorch eager twin to compare with (testdata/ref/bench_train.py; empty: none)")
	f.StringVar(&processes, "bench-processes", "", "data-parallel process counts to time the tiny step with, e.g. 1,2 (empty: none)")
	addDecodeWorkersFlag(f, &workers)
	perInvocation(f, "bench-cases", "bench-steps", "twin", "bench-processes")
	return cmd
}

type twinResult struct{ mean, fastest float64 }

var twinLine = regexp.MustCompile(`([0-9.]+) s/step, [0-9.]+ images/s, fastest step ([0-9.]+) s`)

// runTwin runs the PyTorch eager twin on the case's preset and batch, with libtorch's
// thread count.
func runTwin(cmd *cobra.Command, script string, c trainer.BenchCase, steps int) (twinResult, error) {
	if _, err := os.Stat(script); err != nil {
		return twinResult{}, usagef("twin %s: %v", script, err)
	}
	py := exec.CommandContext(cmd.Context(), "/usr/bin/python3", script, c.Name, "--batch", strconv.Itoa(c.Batch),
		"--steps", strconv.Itoa(steps), "--threads", strconv.Itoa(torch.NumThreads()))
	var out, errb bytes.Buffer
	py.Stdout, py.Stderr = &out, &errb
	if err := py.Run(); err != nil {
		return twinResult{}, fmt.Errorf("twin %s: %v\n%s", script, err, errb.String())
	}
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		if m := twinLine.FindStringSubmatch(sc.Text()); m != nil {
			mean, _ := strconv.ParseFloat(m[1], 64)
			fastest, _ := strconv.ParseFloat(m[2], 64)
			return twinResult{mean, fastest}, nil
		}
	}
	return twinResult{}, fmt.Errorf("twin %s printed no timing:\n%s", script, out.String())
}

// benchThreads is the --threads of each of n bench processes: one process gets the
// default (matmuls on every CPU, other ops on one: libtorch's OpenMP threads spin and
// would take the data loader's CPUs), n share the CPUs.
func benchThreads(n int) int {
	if n == 1 {
		return 0
	}
	return max(1, runtime.NumCPU()/n)
}

// benchProcesses times the tiny pretraining step with n data-parallel processes on this
// machine (capfilt train --nproc-per-node n, Gloo over loopback, each process with its
// share of the CPUs as tensor threads), batch 8 per process: images/s over the measured
// steps and the share of step time spent waiting for the gradient all-reduce after
// backward.
func (a *app) benchProcesses(cmd *cobra.Command, n, steps int) (imagesPerSec, allReduceShare float64, err error) {
	dir, err := os.MkdirTemp("", "capfilt-bench-dist")
	if err != nil {
		return 0, 0, err
	}
	defer os.RemoveAll(dir)
	const batch, warmup = 8, 2
	total := steps + warmup
	if _, err := synth.WriteSampleShards(filepath.Join(dir, "data"), (n*batch*total+63)/64, synth.SampleOptions{PerShard: 64, Width: 256, Height: 256, Seed: 1}); err != nil {
		return 0, 0, err
	}
	vocab := filepath.Join(dir, "vocab.txt")
	if err := os.WriteFile(vocab, []byte(strings.Join(synth.TinyVocab(), "\n")+"\n"), 0o644); err != nil {
		return 0, 0, err
	}
	exe, err := os.Executable()
	if err != nil {
		return 0, 0, err
	}
	out := filepath.Join(dir, "run")
	threads := benchThreads(n)
	train := exec.CommandContext(cmd.Context(), exe, "train", "pretrain", "--data", "web:"+filepath.Join(dir, "data", "*.tar"),
		"--init", "tiny", "--tokenizer", vocab, "--out", out, "--train-batch-size", strconv.Itoa(batch), "--epochs", "1",
		"--max-steps", strconv.Itoa(total), "--dropout", "0", "--log-every", "1", "--save-every", "0",
		"--nproc-per-node", strconv.Itoa(n), "--threads", strconv.Itoa(threads), "--log-level", "warn")
	train.Env = append(os.Environ(), testMainEnv+"=1")
	if msg, err := train.CombinedOutput(); err != nil {
		return 0, 0, fmt.Errorf("train with %d processes: %v\n%s", n, err, msg)
	}
	data, err := os.ReadFile(filepath.Join(out, "train_log.jsonl"))
	if err != nil {
		return 0, 0, err
	}
	var wall, wait float64
	measured := 0
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var rec trainer.StepRecord
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			return 0, 0, err
		}
		if rec.Step <= warmup {
			continue
		}
		wall += rec.StepSeconds
		wait += rec.AllReduceWait
		measured++
	}
	if measured == 0 || wall == 0 {
		return 0, 0, fmt.Errorf("train with %d processes logged no measured step", n)
	}
	return float64(n*batch*measured) / wall, wait / wall, nil
}
