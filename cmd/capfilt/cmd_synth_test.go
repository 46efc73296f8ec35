package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/capfilt/capfilt/blip"
	"github.com/capfilt/capfilt/blip/tokenizer"
	"github.com/capfilt/capfilt/synth"
)

func TestSynthWritesAWorldWhoseVocabularyAndModelConfigLoad(t *testing.T) {
	out := filepath.Join(t.TempDir(), "world")
	code, stdout, stderr := runCLI(t, "synth", "--out", out, "--images", "120", "--per-shard", "50", "--annotated", "6",
		"--test", "4", "--noise", "0.5", "--incomplete", "0.25", "--noise-mix", "junk=1", "--seed", "11")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"seed 11 from flag", "120 images in 3 shards", "web/{00000..00002}.tar", "full                 30 (25.0%)",
		"incomplete           30 (25.0%)", "junk                 60 (50.0%)", "wrong_attribute       0", "noise in all               60 (50.0%)",
		"6 images, 30 captions", "4 images, 20 captions", "vocab.txt", "model_config.json"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("summary lacks %q:\n%s", want, stdout)
		}
	}
	if !strings.Contains(stderr, "100%") {
		t.Errorf("no progress on stderr: %q", stderr)
	}
	w, err := synth.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := blip.FromHFConfig(w.ModelConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.Load(w.VocabFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := tok.SetDecEncIDs(cfg.Text.BosID, cfg.Text.EncID); err != nil {
		t.Fatal(err)
	}
	if cfg.Text.VocabSize != tok.VocabSize()+2 || cfg.Vision.ImageSize != 48 || cfg.Text.MaxPositions < w.MaxCaptionTokens+4 ||
		cfg.Text.ClsID != tok.ClsID() || cfg.Text.SepID != tok.SepID() || cfg.Text.PadID != tok.PadID() {
		t.Fatalf("model config %+v does not fit the vocabulary (%d tokens, longest caption %d)", cfg, tok.VocabSize(), w.MaxCaptionTokens)
	}
	m, err := blip.New(cfg, blip.AllParts())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var params int64
	for _, n := range m.NumParams() {
		params += n
	}
	if params < 100_000 || params > 2_000_000 {
		t.Errorf("the recommended model has %d parameters; a tiny one has some hundred thousand", params)
	}
	// A second world into the same folder needs --overwrite.
	if code, _, stderr := runCLI(t, "synth", "--out", out, "--images", "10"); code != 2 || !strings.Contains(stderr, "already exists") {
		t.Errorf("second world: exit %d: %s", code, stderr)
	}
	if code, _, stderr := runCLI(t, "synth", "--out", out, "--images", "10", "--annotated", "2", "--test", "2", "--overwrite"); code != 0 {
		t.Errorf("overwrite: exit %d: %s", code, stderr)
	}
}

func TestSynthBadSettingsNameTheSettingAndItsSource(t *testing.T) {
	out := filepath.Join(t.TempDir(), "w")
	for _, tc := range []struct {
		args []string
		env  [2]string
		want string
	}{
		{[]string{"synth"}, [2]string{}, "no output folder given (--out)"},
		{[]string{"synth", "--out", out, "--noise", "1.5"}, [2]string{}, "noise (from flag): noise 1.5: want a share from 0 to 1"},
		{[]string{"synth", "--out", out, "--noise", "0.8", "--incomplete", "0.3"}, [2]string{}, "incomplete (from flag): noise 0.8 + incomplete 0.3 is over 1"},
		{[]string{"synth", "--out", out}, [2]string{"CAPFILT_IMAGES", "lots"}, `images "lots" (from env): not a whole number`},
		{[]string{"synth", "--out", out}, [2]string{"CAPFILT_NOISE", "high"}, `noise "high" (from env): not a number`},
		{[]string{"synth", "--out", out, "--image-size", "40"}, [2]string{}, "image-size (from flag): image size 40"},
		{[]string{"synth", "--out", out, "--images", "1"}, [2]string{}, "images (from flag): web images 1"},
		{[]string{"synth", "--out", out, "--noise-mix", "spam=1"}, [2]string{}, `noise-mix (from flag): noise mix "spam=1": unknown kind`},
		{[]string{"synth", "--out", out, "--seed", "-3"}, [2]string{}, `seed "-3" (from flag)`},
		{[]string{"synth", "--out", out, "--images", "ten"}, [2]string{}, "invalid argument"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			if tc.env[0] != "" {
				t.Setenv(tc.env[0], tc.env[1]) // restored when the subtest ends
			}
			code, _, stderr := runCLI(t, tc.args...)
			if code != 2 || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want 2 and %q", code, stderr, tc.want)
			}
		})
	}
}
