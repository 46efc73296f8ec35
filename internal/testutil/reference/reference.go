// Package reference gives tests the independent reference's fixtures (testdata/golden:
// outputs of the plain-PyTorch BLIP in testdata/ref) and the tiny vocabulary, so every
// package compares against the same checkpoints in the same way.
package reference

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/capfilt/capfilt/blip/tokenizer"

	"github.com/capfilt/capfilt/blip"
	"github.com/capfilt/capfilt/synth"
	"github.com/capfilt/capfilt/torch"
)

// generatorSeeds are the deterministic-weight seeds of the reference checkpoints whose
// weights are not stored (base: 1.5 GB), see testdata/ref/README.md.
var generatorSeeds = map[string]uint64{"base": 2}

// Dir is testdata/golden, wherever the test runs from; CAPFILT_GOLDEN_DIR names it for a
// test binary run away from its source tree (scripts/gpu-check.sh).
func Dir() string {
	if d := os.Getenv("CAPFILT_GOLDEN_DIR"); d != "" {
		return d
	}
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..", "testdata", "golden")
}

// Case returns the directory of a reference case, skipping the test when it is absent.
func Case(t testing.TB, name string) string {
	t.Helper()
	dir := filepath.Join(Dir(), name)
	if _, err := os.Stat(dir); err != nil {
		t.Skip("no goldens:", err)
	}
	return dir
}

// Tensors maps a safetensors file's tensors; they are freed when the test ends.
func Tensors(t testing.TB, path string) map[string]*torch.Tensor {
	t.Helper()
	m, err := blip.ReadTensors(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, x := range m {
			x.Free()
		}
	})
	return m
}

// Model loads a reference case's checkpoint, or rebuilds it from the deterministic
// generator where its weights are not stored, with the given parts, onto TestDevice.
func Model(t testing.TB, name string, parts blip.Parts) *blip.Model {
	t.Helper()
	m := model(t, name, parts)
	if dev := TestDevice(t); dev != torch.CPU {
		if err := m.To(dev, torch.Float32); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

// TestDevice is where reference tests run their model: CAPFILT_TEST_DEVICE (cpu, cuda,
// cuda:N; scripts/gpu-check.sh runs the goldens on a GPU with it), else the CPU.
func TestDevice(t testing.TB) torch.Device {
	t.Helper()
	s := os.Getenv("CAPFILT_TEST_DEVICE")
	if s == "" {
		return torch.CPU
	}
	dev, err := torch.ParseDevice(s)
	if err != nil {
		t.Fatalf("CAPFILT_TEST_DEVICE: %v", err)
	}
	return dev
}

func model(t testing.TB, name string, parts blip.Parts) *blip.Model {
	t.Helper()
	dir := Case(t, name)
	if _, err := os.Stat(filepath.Join(dir, "model.safetensors")); err == nil {
		m, _, err := blip.Load(dir, blip.LoadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(m.Close)
		return m
	}
	seed, ok := generatorSeeds[name]
	if !ok {
		t.Fatalf("reference case %s stores no weights and has no generator seed", name)
	}
	cfg, err := blip.FromHFConfig(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := blip.New(cfg, parts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	if err := m.InitDeterministic(seed); err != nil {
		t.Fatal(err)
	}
	return m
}

// TinyTokenizer is the tiny vocabulary (synth.TinyVocab) with cfg's [DEC] and [ENC] ids.
func TinyTokenizer(t testing.TB, cfg blip.Config) *tokenizer.Tokenizer {
	t.Helper()
	tok, err := tokenizer.New(synth.TinyVocab(), tokenizer.BertUncased)
	if err != nil {
		t.Fatal(err)
	}
	if err := tok.SetDecEncIDs(cfg.Text.BosID, cfg.Text.EncID); err != nil {
		t.Fatal(err)
	}
	return tok
}

// LogMachine logs what a benchmark's speeds depend on: they compare only as ratios
// measured in one run.
func LogMachine(b testing.TB) {
	info, err := torch.BLASInfo()
	if err != nil {
		b.Logf("BLAS: %v", err)
	}
	b.Logf("libtorch %s, %v, %d intra-op threads, %d BLAS threads", torch.Version(), info, torch.NumThreads(), torch.BLASThreads())
}
