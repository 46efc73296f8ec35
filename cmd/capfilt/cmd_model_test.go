package main

import (
	"encoding/json"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/capfilt/capfilt/blip"
)

var (
	refDir    = filepath.Join("..", "..", "testdata", "golden")
	tinyVocab = filepath.Join("..", "..", "synth", "tiny_vocab.txt")
)

func needGoldens(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(refDir, "tiny")); err != nil {
		t.Skip("no goldens:", err)
	}
}

func maxDiff(t *testing.T, a, b []float32) float64 {
	t.Helper()
	if len(a) != len(b) {
		t.Fatalf("%d vs %d values", len(a), len(b))
	}
	var d float64
	for i := range a {
		d = math.Max(d, math.Abs(float64(a[i]-b[i])))
	}
	return d
}

func TestModelForwardWritesTheReferenceOutputs(t *testing.T) {
	needGoldens(t)
	out := filepath.Join(t.TempDir(), "out.safetensors")
	for _, model := range []string{filepath.Join(refDir, "tiny"), filepath.Join(refDir, "tiny-original", "model.pth")} {
		code, stdout, stderr := runCLI(t, "model", "forward", "--model", model,
			"--inputs", filepath.Join(refDir, "tiny", "inputs.safetensors"), "--out", out)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		if !strings.Contains(stdout, "itm.logits") || !strings.Contains(stdout, "vision.last_hidden_state_hires") {
			t.Fatalf("outputs listed: %s", stdout)
		}
		got, err := blip.ReadTensors(out)
		if err != nil {
			t.Fatal(err)
		}
		want, err := blip.ReadTensors(filepath.Join(refDir, "tiny", "golden.safetensors"))
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range []string{"vision.last_hidden_state", "vision.last_hidden_state_hires", "text_unimodal.last_hidden_state",
			"itc.image_feat", "itc.text_feat", "itm.logits", "decoder.logits"} {
			g, _ := got[n].Float32s()
			w, _ := want[n].Float32s()
			if d := maxDiff(t, g, w); d > 1e-4 {
				t.Errorf("%s via %s: max |diff| %g", n, model, d)
			}
		}
	}
}

func TestModelGenerateWritesTheReferenceIDs(t *testing.T) {
	needGoldens(t)
	dir := filepath.Join(refDir, "tiny-gen")
	out := filepath.Join(t.TempDir(), "gen.safetensors")
	want, err := blip.ReadTensors(filepath.Join(dir, "golden.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	for key, args := range map[string][]string{
		"generate.greedy.ids":     {"--mode", "greedy", "--max-length", "20", "--min-length", "5"},
		"generate.greedy_pen.ids": {"--mode", "greedy", "--max-length", "20", "--min-length", "5", "--repetition-penalty", "1.1"},
		"generate.beam3.ids":      {"--mode", "beam", "--num-beams", "3", "--max-length", "20", "--min-length", "5"},
	} {
		args = append([]string{"model", "generate", "--model", dir, "--inputs", filepath.Join(dir, "inputs.safetensors"), "--out", out}, args...)
		if code, _, stderr := runCLI(t, args...); code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, stderr)
		}
		got, err := blip.ReadTensors(out)
		if err != nil {
			t.Fatal(err)
		}
		g, _ := got["generate.ids"].Int64s()
		w, _ := want[key].Int64s()
		if !slices.Equal(g, w) {
			t.Fatalf("%s: got %v %v, reference %v %v", key, got["generate.ids"].Shape(), g, want[key].Shape(), w)
		}
	}
}

func TestModelInspectAndConvertRoundTrip(t *testing.T) {
	needGoldens(t)
	pth := filepath.Join(refDir, "tiny-original", "model.pth")
	code, out, stderr := runCLI(t, "model", "inspect", pth)
	if code != 0 {
		t.Fatalf("inspect: exit %d %s", code, stderr)
	}
	for _, want := range []string{"original names", "vision, text_encoder, text_decoder, itc, itm, temp", "strict load OK", "momentum model", "ITC dim 16"} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect output lacks %q:\n%s", want, out)
		}
	}
	hf := filepath.Join(t.TempDir(), "hf")
	if code, _, stderr := runCLI(t, "model", "convert", pth, hf, "--tokenizer", tinyVocab); code != 0 {
		t.Fatalf("convert to HF: %s", stderr)
	}
	back := filepath.Join(t.TempDir(), "back.pth")
	if code, _, stderr := runCLI(t, "model", "convert", hf, back); code != 0 {
		t.Fatalf("convert back: %s", stderr)
	}
	code, out, _ = runCLI(t, "model", "inspect", "--json", back)
	if code != 0 {
		t.Fatal("inspect of the converted file failed")
	}
	var rep struct {
		StrictOK bool `json:"strict_ok"`
		Report   struct {
			Naming string `json:"naming"`
			Loaded int    `json:"loaded"`
		} `json:"report"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || !rep.StrictOK || rep.Report.Naming != "original" || rep.Report.Loaded != 154 {
		t.Fatalf("converted back: %+v %v\n%s", rep, err, out)
	}
	if _, err := os.Stat(filepath.Join(hf, "vocab.txt")); err != nil {
		t.Fatal("convert must copy the tokenizer vocabulary")
	}
	// Forward outputs survive both conversions.
	a, b := filepath.Join(t.TempDir(), "a.st"), filepath.Join(t.TempDir(), "b.st")
	in := filepath.Join(refDir, "tiny", "inputs.safetensors")
	runCLI(t, "model", "forward", "--model", pth, "--inputs", in, "--out", a)
	runCLI(t, "model", "forward", "--model", back, "--inputs", in, "--out", b)
	ta, _ := blip.ReadTensors(a)
	tb, _ := blip.ReadTensors(b)
	x, _ := ta["itm.logits"].Float32s()
	y, _ := tb["itm.logits"].Float32s()
	if d := maxDiff(t, x, y); d != 0 {
		t.Fatalf("itm.logits changed by conversion: %g", d)
	}
}

// writePNG writes a w×h image filled with c.
func writePNG(t *testing.T, path string, w, h int, c color.RGBA) {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.Set(x, y, color.RGBA{c.R + uint8(x), c.G, c.B + uint8(y), 255})
		}
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := png.Encode(f, img); err != nil {
		t.Fatal(err)
	}
}

func TestCaptionAndScoreCommands(t *testing.T) {
	needGoldens(t)
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.png"), filepath.Join(dir, "b.png")
	writePNG(t, a, 80, 60, color.RGBA{200, 10, 10, 255})
	writePNG(t, b, 30, 90, color.RGBA{10, 10, 200, 255})
	model := filepath.Join(refDir, "tiny-gen")
	code, out, stderr := runCLI(t, "caption", "--model", model, "--tokenizer", tinyVocab, "--seed", "3", a, b)
	if code != 0 {
		t.Fatalf("caption: exit %d: %s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], a+"\t") || !strings.HasPrefix(lines[1], b+"\t") {
		t.Fatalf("caption output:\n%s", out)
	}
	_, again, _ := runCLI(t, "caption", "--model", model, "--tokenizer", tinyVocab, "--seed", "3", b, a)
	if !strings.Contains(again, lines[0]) || !strings.Contains(again, lines[1]) {
		t.Fatalf("an image's caption depends on the order of the images:\n%s\nvs\n%s", out, again)
	}
	code, out, _ = runCLI(t, "caption", "--model", model, "--tokenizer", tinyVocab, "--mode", "beam", "--json", a)
	var rec struct {
		Image    string `json:"image"`
		Captions []struct {
			Text string  `json:"text"`
			IDs  []int64 `json:"ids"`
		} `json:"captions"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &rec) != nil || rec.Image != a || len(rec.Captions) != 1 || rec.Captions[0].IDs[0] != 118 {
		t.Fatalf("caption --json: %s", out)
	}
	code, _, stderr = runCLI(t, "caption", "--model", model, "--tokenizer", tinyVocab, a, filepath.Join(dir, "missing.png"))
	if code != 1 || !strings.Contains(stderr, "missing.png") {
		t.Fatalf("a missing image: exit %d, %s", code, stderr)
	}

	code, out, stderr = runCLI(t, "score", "--model", filepath.Join(refDir, "tiny"), "--tokenizer", tinyVocab,
		"--image", a, "--text", "a red square", "--text", "a dog on the beach", "--itm-threshold", "0")
	if code != 0 || strings.Count(out, "keep") != 2 || !strings.Contains(out, "a dog on the beach") {
		t.Fatalf("score: exit %d\n%s\n%s", code, out, stderr)
	}
	pairs := filepath.Join(dir, "pairs.jsonl")
	os.WriteFile(pairs, []byte(`{"image": "`+a+`", "texts": ["a red square", "blue"], "source": "synthetic"}`+"\n"+
		`{"image": "`+b+`", "text": "a blue square"}`+"\n"), 0o644)
	code, out, stderr = runCLI(t, "score", "--model", filepath.Join(refDir, "tiny"), "--tokenizer", tinyVocab, "--pairs", pairs, "--itm-threshold", "1")
	if code != 0 || strings.Count(out, `"keep":false`) != 3 || !strings.Contains(out, `"source":"synthetic"`) {
		t.Fatalf("score --pairs: exit %d\n%s\n%s", code, out, stderr)
	}
	os.WriteFile(pairs, []byte(`{"image": "x.png", "source": "forum"}`+"\n"), 0o644)
	if code, _, stderr := runCLI(t, "score", "--model", filepath.Join(refDir, "tiny"), "--tokenizer", tinyVocab, "--pairs", pairs); code != 2 || !strings.Contains(stderr, "line 1") {
		t.Fatalf("bad pairs file: exit %d %s", code, stderr)
	}
}

func TestModelCommandsRejectBadSettings(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"model", "forward", "--model", "/no/such/model", "--inputs", "x", "--out", "y"}, "inputs x"},
		{[]string{"caption", "--model", "/no/such/model", "a.png"}, "/no/such/model"},
		{[]string{"caption", "--model", ".", "--mode", "topk", "a.png"}, `mode "topk"`},
		{[]string{"caption", "--model", ".", "--top-p", "2", "a.png"}, "top-p 2"},
		{[]string{"score", "--model", ".", "--image", "a.png"}, "--text"},
		{[]string{"score", "--model", ".", "--image", "a.png", "--text", "x", "--keep-web-only-if", "itm>0.5"}, "keep-web-only-if"},
		{[]string{"caption", "--model", ".", "--device", "cuda:7", "a.png"}, "cuda:7"},
	}
	for _, c := range cases {
		code, _, stderr := runCLI(t, c.args...)
		if code != 2 || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d, %q; want exit 2 naming %q", c.args, code, stderr, c.want)
		}
	}
}
