package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/capfilt/capfilt/shards"
	"github.com/capfilt/capfilt/synth"
)

// cliWorld writes a small synthetic world with capfilt synth.
func cliWorld(t *testing.T) *synth.World {
	t.Helper()
	out := filepath.Join(t.TempDir(), "world")
	mustRun(t, "synth", "--out", out, "--images", "64", "--shard-size", "32", "--annotated", "16", "--test", "8",
		"--captions", "3", "--world-seed", "5")
	w, err := synth.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// From a synthetic world to a pretrained tiny model with capfilt train, whose output
// capfilt run loads as its captioner and filter (the Parquet it writes reads back), and
// which both eval commands score, printing a table and writing JSON.
func TestTrainedModelRunsAndEvaluates(t *testing.T) {
	w := cliWorld(t)
	dir := t.TempDir()
	model := filepath.Join(dir, "model")
	out := mustRun(t, "train", "pretrain", "--data", "web:"+w.WebPattern, "--init", w.ModelConfigFile, "--tokenizer", w.VocabFile,
		"--out", model, "--train-batch-size", "8", "--queue-size", "64", "--epochs", "1", "--augment=false", "--warmup-steps", "2",
		"--lr", "1e-3", "--log-every", "2", "--threads", "1", "--decode-workers", "2")
	if !strings.Contains(out, "trained pretrain: 8 steps, 1 epochs; model in "+model) {
		t.Fatalf("train said:\n%s", out)
	}
	log, err := os.ReadFile(filepath.Join(model, "train_log.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(log)), "\n")
	var rec struct {
		Step         int
		ITC, ITM, LM float64
		Total        float64
		ImagesPerSec float64 `json:"images_per_sec"`
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &rec); err != nil || len(lines) != 4 || rec.Step != 8 || rec.Total <= 0 || rec.ImagesPerSec <= 0 {
		t.Fatalf("train log (%v):\n%s", err, log)
	}

	cleaned := filepath.Join(dir, "cleaned")
	mustRun(t, "run", "--model", model, "--input", w.WebPattern, "--output", cleaned, "--itm-threshold", "0", "--threads", "1",
		"--store-dir", filepath.Join(dir, "nats"), "--max-length", "12")
	store := shards.OpenStore(shards.StoreConfig{})
	files, err := filepath.Glob(filepath.Join(cleaned, "*.parquet"))
	if err != nil || len(files) != 2 {
		t.Fatalf("cleaned output: %v %v", files, err)
	}
	rows := 0
	for _, f := range files {
		n, err := countCleanedRows(context.Background(), store, f)
		if err != nil {
			t.Fatal(err)
		}
		rows += n
	}
	if rows != 64 {
		t.Errorf("%d cleaned rows from 64 web images kept at threshold 0", rows)
	}
	// The trainer reads back what run wrote: the next pretraining's data.
	out = mustRun(t, "train", "pretrain", "--data", "cleaned:"+filepath.Join(cleaned, "*.parquet"), "--init", w.ModelConfigFile,
		"--tokenizer", w.VocabFile, "--out", filepath.Join(dir, "second"), "--train-batch-size", "8", "--queue-size", "64",
		"--max-steps", "2", "--augment=false", "--threads", "1")
	if !strings.Contains(out, "trained pretrain: 2 steps") {
		t.Errorf("training on the cleaned output said:\n%s", out)
	}

	scores := filepath.Join(dir, "retrieval.json")
	out = mustRun(t, "eval", "retrieval", "--model", model, "--data", "coco:"+w.Test.Annotations, "--out", scores, "--threads", "1")
	if !strings.Contains(out, "text retrieval (8 images)") || !strings.Contains(out, "image retrieval (24 texts)") {
		t.Errorf("eval retrieval printed:\n%s", out)
	}
	var rr retrievalReport
	if data, err := os.ReadFile(scores); err != nil || json.Unmarshal(data, &rr) != nil || rr.Scores.Images != 8 || rr.K != 256 {
		t.Errorf("retrieval report %+v (%v)", rr, err)
	}
	capScores := filepath.Join(dir, "caption.json")
	out = mustRun(t, "eval", "caption", "--model", model, "--data", "coco:"+w.Test.Annotations, "--out", capScores,
		"--max-length", "16", "--threads", "1")
	if !strings.Contains(out, "BLEU-1") || !strings.Contains(out, "CIDEr-D") {
		t.Errorf("eval caption printed:\n%s", out)
	}
	var cr captionReport
	if data, err := os.ReadFile(capScores); err != nil || json.Unmarshal(data, &cr) != nil || cr.Scores.Images != 8 ||
		len(cr.Scores.PerImage) != 8 || cr.Settings["num_beams"] != float64(3) || cr.Settings["max_length"] != float64(16) {
		t.Errorf("caption report %+v (%v)", cr, err)
	}
}

// Bad training settings are errors that name the setting and where its value came from.
func TestTrainRefusesBadSettingsNamingTheirSource(t *testing.T) {
	dir := t.TempDir()
	base := []string{"train", "pretrain", "--data", "web:" + filepath.Join(dir, "none-*.tar"), "--init", "tiny", "--out", filepath.Join(dir, "m")}
	cases := []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"batch from the flag", nil, []string{"--train-batch-size", "1"}, "train-batch-size 1 (from --train-batch-size): ITM hard negatives need a batch of at least 2"},
		{"decay from the environment", map[string]string{"CAPFILT_LR_DECAY_RATE": "1.5"}, nil, "lr-decay-rate 1.5 (from CAPFILT_LR_DECAY_RATE): must be in (0, 1]"},
		{"unparsable lr", map[string]string{"CAPFILT_LR": "fast"}, nil, `lr "fast" (from CAPFILT_LR): not a number`},
		{"fresh model without a vocabulary", nil, nil, `tokenizer "" (default): a fresh model needs a vocabulary`},
		{"half precision", nil, []string{"--tokenizer", "v.txt", "--dtype", "bfloat16"}, `dtype "bfloat16" (from --dtype): training runs in float32`},
		{"bad data source", nil, []string{"--tokenizer", "v.txt", "--data", "laion:x"}, `unknown kind "laion"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			code, _, stderr := runCLI(t, append(append([]string{}, base...), c.args...)...)
			if code != 2 || !strings.Contains(stderr, c.want) {
				t.Errorf("exit %d, stderr %q; want 2 and %q", code, stderr, c.want)
			}
		})
	}
}

// countCleanedRows reads a cleaned Parquet through the store and counts its rows.
func countCleanedRows(ctx context.Context, store shards.Store, path string) (int, error) {
	r, err := store.OpenAt(ctx, shards.URL{Scheme: shards.SchemeFile, Path: path})
	if err != nil {
		return 0, err
	}
	defer r.Close()
	cr, err := shards.OpenCleaned(r, path, shards.CleanedReadOptions{SkipImages: true})
	if err != nil {
		return 0, err
	}
	defer cr.Close()
	n := 0
	for {
		if _, err := cr.Next(); err != nil {
			if errors.Is(err, io.EOF) {
				return n, nil
			}
			return n, err
		}
		n++
	}
}

// --nproc-per-node 2 starts two ranks of the same command (Gloo over loopback): the job
// trains, only rank 0 reports and writes, and its checkpoint holds both ranks' state.
func TestTrainStartsLocalProcesses(t *testing.T) {
	w := cliWorld(t)
	t.Setenv(testMainEnv, "1") // the ranks are this test binary acting as capfilt
	t.Setenv("GLOO_SOCKET_IFNAME", "lo")
	model := filepath.Join(t.TempDir(), "model")
	out := mustRun(t, "train", "pretrain", "--data", "web:"+w.WebPattern, "--init", w.ModelConfigFile, "--tokenizer", w.VocabFile,
		"--out", model, "--train-batch-size", "4", "--queue-size", "64", "--max-steps", "3", "--augment=false",
		"--nproc-per-node", "2", "--threads", "1", "--dist-timeout", "20s")
	if n := strings.Count(out, "trained pretrain: 3 steps"); n != 1 {
		t.Errorf("want one summary, from rank 0:\n%s", out)
	}
	st, err := os.ReadFile(filepath.Join(model, "train_state", "step-000000003", "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	var state struct {
		Settings struct {
			World int `json:"world_size"`
		} `json:"settings"`
		Ranks []struct {
			Rank int `json:"rank"`
		} `json:"ranks"`
	}
	if err := json.Unmarshal(st, &state); err != nil || state.Settings.World != 2 || len(state.Ranks) != 2 {
		t.Errorf("checkpoint state (%v):\n%s", err, st)
	}
}
