package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/capfilt/capfilt/blip"
)

// model loss on the reference's pretraining inputs gives the reference's first step:
// the three losses, the gradient of every parameter and the queue after its write.
func TestModelLossWritesTheReferenceLossesAndGradients(t *testing.T) {
	dir := filepath.Join(refDir, "tiny-train")
	needGoldens(t)
	out := filepath.Join(t.TempDir(), "loss.safetensors")
	code, stdout, stderr := runCLI(t, "model", "loss", "--model", dir, "--inputs", filepath.Join(dir, "inputs.safetensors"),
		"--out", out, "--grads")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "loss.total") || !strings.Contains(stdout, "grad.*") {
		t.Fatalf("summary: %s", stdout)
	}
	got, err := blip.ReadTensors(out)
	if err != nil {
		t.Fatal(err)
	}
	want, err := blip.ReadTensors(filepath.Join(dir, "golden.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	grads := 0
	for name, g := range got {
		var ref string
		tol := 1e-5
		switch {
		case strings.HasPrefix(name, "grad."):
			ref = "step1." + name
			grads++
		case strings.HasPrefix(name, "loss."):
			ref = "step1." + name
		case name == "queue.image":
			ref, tol = "step1.image_queue", 1e-6
		case name == "queue.text":
			ref, tol = "step1.text_queue", 1e-6
		default:
			continue
		}
		w, ok := want[ref]
		if !ok {
			t.Errorf("%s: the reference has no %s", name, ref)
			continue
		}
		gv, _ := g.Float32s()
		wv, _ := w.Float32s()
		if d := maxDiff(t, gv, wv); d > tol {
			t.Errorf("%s differs from the reference by %g", name, d)
		}
	}
	if grads != 118 {
		t.Fatalf("%d gradients written, the tiny pretraining model has 118 parameters", grads)
	}
	in, _ := blip.ReadTensors(filepath.Join(dir, "inputs.safetensors"))
	used, _ := got["itm.neg_image_idx"].Int64s()
	given, _ := in["neg_image_idx"].Int64s()
	if len(used) != len(given) || used[0] != given[0] || used[3] != given[3] {
		t.Fatalf("negatives used %v, given %v", used, given)
	}
}

func TestModelLossHelpNamesItsInputs(t *testing.T) {
	_, stdout, _ := runCLI(t, "model", "loss", "--help")
	for _, name := range []string{"pixel_values", "input_ids", "attention_mask", "neg_image_idx", "neg_text_idx", "image_queue", "text_queue", "alpha", "--grads"} {
		if !strings.Contains(stdout, name) {
			t.Errorf("--help does not name %s", name)
		}
	}
	needGoldens(t)
	// The tiny inference checkpoint has no shared decoder: not a pretraining model.
	code, _, stderr := runCLI(t, "model", "loss", "--model", filepath.Join(refDir, "tiny"),
		"--inputs", filepath.Join(refDir, "tiny-train", "inputs.safetensors"), "--out", filepath.Join(t.TempDir(), "x.safetensors"))
	if code == 0 || !strings.Contains(stderr, "pretraining") {
		t.Fatalf("a non-pretraining model: exit %d, %s", code, stderr)
	}
}
