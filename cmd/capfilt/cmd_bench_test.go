package main

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
)

func TestBenchPipelineMeasuresOverheadAndScaling(t *testing.T) {
	out := mustRun(t, "bench", "pipeline", "--bench-shards", "2", "--bench-per-shard", "8", "--bench-image-size", "48", "--preprocess-size", "32",
		"--processes", "1,2", "--repeat", "1")
	for _, want := range []string{"blas: ", "raw read + decode", "one worker, pass-through model", "1 worker process(es)", "2 worker process(es)"} {
		if !strings.Contains(out, want) {
			t.Fatalf("bench output lacks %q:\n%s", want, out)
		}
	}
	// Every run handled every sample.
	for _, m := range regexp.MustCompile(`(\d+) images in`).FindAllStringSubmatch(out, -1) {
		if n, _ := strconv.Atoi(m[1]); n != 16 {
			t.Fatalf("a bench run counted %d images, want 16:\n%s", n, out)
		}
	}
	if !regexp.MustCompile(`= \d+\.\d\d of raw`).MatchString(out) {
		t.Fatalf("no overhead ratio:\n%s", out)
	}
}
