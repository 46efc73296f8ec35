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
	code, stdout, stderr := runCLI(t, "synth", "--out", out, "--images", "120", "--shard-size", "50", "--annotated", "6",
		"--test", "4", "--noise", "0.5", "--incomplete", "0.25", "--noise-mix", "junk=1", "--world-seed", "11")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"world seed 11", "120 images in 3 shards", "web/{00000..00002}.tar", "full                 30 (25.0%)",
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
	// A second world into the same folder needs --replace-world.
	if code, _, stderr := runCLI(t, "synth", "--out", out, "--images", "10"); code != 2 || !strings.Contains(stderr, "already exists") {
		t.Errorf("second world: exit %d: %s", code, stderr)
	}
	if code, _, stderr := runCLI(t, "synth", "--out", out, "--images", "10", "--annotated", "2", "--test", "2", "--replace-world"); code != 0 {
		t.Errorf("overwrite: exit %d: %s", code, stderr)
	}
}

func TestSynthBadFlagsNameTheFlag(t *testing.T) {
	out := filepath.Join(t.TempDir(), "w")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"synth"}, "no output folder given (--out)"},
		{[]string{"synth", "--out", out, "--noise", "1.5"}, "noise (from --noise): noise 1.5: want a share from 0 to 1"},
		{[]string{"synth", "--out", out, "--noise", "0.8", "--incomplete", "0.3"}, "incomplete (from --incomplete): noise 0.8 + incomplete 0.3 is over 1"},
		{[]string{"synth", "--out", out, "--image-side", "40"}, "image-side (from --image-side): image size 40"},
		{[]string{"synth", "--out", out, "--images", "1"}, "images (from --images): web images 1"},
		{[]string{"synth", "--out", out, "--shard-size", "0"}, "shard-size (from --shard-size): per shard 0"},
		{[]string{"synth", "--out", out, "--noise-mix", "spam=1"}, `noise-mix (from --noise-mix): noise mix "spam=1": unknown kind`},
		// Values that do not parse are refused by the flag parser, whose wording is the CLI's.
		{[]string{"synth", "--out", out, "--world-seed", "-3"}, `"-3"`},
		{[]string{"synth", "--out", out, "--images", "ten"}, `"ten"`},
	} {
		t.Run(tc.want, func(t *testing.T) {
			code, _, stderr := runCLI(t, tc.args...)
			flag := "--out"
			if n := len(tc.args); n > 3 {
				flag = tc.args[n-2]
			}
			if code != 2 || !strings.Contains(stderr, tc.want) || !strings.Contains(stderr, flag) {
				t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tc.args, code, stderr, tc.want)
			}
		})
	}
}
