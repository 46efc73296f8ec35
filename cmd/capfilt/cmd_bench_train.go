package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/capfilt/capfilt/torch"
	"github.com/capfilt/capfilt/trainer"
)

func newBenchTrainCommand(a *app) *cobra.Command {
	var cases, twin string
	var steps, workers int
	cmd := &cobra.Command{
		Use:   "train [--bench-cases tiny,base224] [--bench-steps 10] [--twin testdata/ref/bench_train.py]",
		Short: "Training images/s for tiny and base on this machine, the share of step time waiting for data, and the ratio to PyTorch eager",
		Long: `Runs the pretraining loop (the data loader on sample shards of 256 px images with BLIP's train
transform, tokenising, ITC + ITM + LM with a queue of 57600, backward, AdamW) for each case:
tiny (the tiny preset at 64 px, 8 images per step) and base224 (ViT-B/16 and BERT-base at 224
px, 2 images per step), dropout off. It prints images/s over the measured steps (waits
included), the mean and fastest step without its data wait, and the share of wall time the
steps waited for a batch (target: under 5%).

With --twin (testdata/ref/bench_train.py, run by /usr/bin/python3 with Debian's python3-torch)
the same step runs in PyTorch eager on the same libtorch threads, and the ratio of its
seconds per step to capfilt's is printed (above 1: capfilt is faster).`,
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
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cases, "bench-cases", "tiny,base224", "cases to run: tiny (64 px, batch 8), base224 (ViT-B/BERT-base at 224 px, batch 2)")
	f.IntVar(&steps, "bench-steps", 10, "measured steps per case (after 2 warm-up steps)")
	f.StringVar(&twin, "twin", "", "PyTorch eager twin to compare with (testdata/ref/bench_train.py; empty: none)")
	addDecodeWorkersFlag(f, &workers)
	perInvocation(f, "bench-cases", "bench-steps", "twin")
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
