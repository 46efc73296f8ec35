package blip

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/capfilt/capfilt/torch"
)

// refDir is where the independent reference (testdata/ref/blip_ref.py, plain PyTorch
// written from the spec alone) left its outputs.
var refDir = filepath.Join("..", "testdata", "golden")

func readRefTensors(t *testing.T, path string) map[string]*torch.Tensor {
	t.Helper()
	m, err := ReadTensors(path)
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

// inputsOf returns the golden inputs under their plain names (with or without "inputs.").
func inputsOf(m map[string]*torch.Tensor) ForwardInputs {
	get := func(n string) *torch.Tensor {
		if t, ok := m["inputs."+n]; ok {
			return t
		}
		return m[n]
	}
	return ForwardInputs{PixelValues: get("pixel_values"), PixelValuesHires: get("pixel_values_hires"),
		InputIDs: get("input_ids"), AttentionMask: get("attention_mask")}
}

// maxAbsDiff compares two float tensors of the same shape.
func maxAbsDiff(t *testing.T, name string, got, want *torch.Tensor) float64 {
	t.Helper()
	if fmt.Sprint(got.Shape()) != fmt.Sprint(want.Shape()) {
		t.Fatalf("%s: shape %v, reference %v", name, got.Shape(), want.Shape())
	}
	g, err := got.ToDType(torch.Float32).Float32s()
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	w, err := want.ToDType(torch.Float32).Float32s()
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	var d float64
	for i := range g {
		if math.IsNaN(float64(g[i])) {
			t.Fatalf("%s[%d] is NaN", name, i)
		}
		d = math.Max(d, math.Abs(float64(g[i])-float64(w[i])))
	}
	return d
}

// compareOutputs checks every output the reference holds under a name we produce.
func compareOutputs(t *testing.T, model *Model, inputs, golden map[string]*torch.Tensor, tol float64) {
	t.Helper()
	s := torch.NewScope()
	defer s.Close()
	out, err := model.ReferenceOutputs(s, inputsOf(inputs))
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, 0, len(out))
	for n := range out {
		names = append(names, n)
	}
	sort.Strings(names)
	compared := 0
	for _, n := range names {
		ref, ok := golden[n]
		if !ok {
			continue
		}
		d := maxAbsDiff(t, n, out[n], ref)
		t.Logf("%-36s max |diff| %.3g", n, d)
		if d > tol {
			t.Errorf("%s differs from the reference by %.3g (> %.0e)", n, d, tol)
		}
		compared++
	}
	if compared < 6 {
		t.Fatalf("only %d outputs compared; reference holds %d", compared, len(golden))
	}
}

func TestTinyMatchesReferenceForEveryCheckpointLayout(t *testing.T) {
	dir := filepath.Join(refDir, "tiny")
	if _, err := os.Stat(dir); err != nil {
		t.Skip("no goldens:", err)
	}
	inputs := readRefTensors(t, filepath.Join(dir, "inputs.safetensors"))
	golden := readRefTensors(t, filepath.Join(dir, "golden.safetensors"))
	for _, layout := range []string{"tiny", "tiny-original/model.pth", "tiny-bin", "tiny-nolmhead"} {
		t.Run(strings.ReplaceAll(layout, "/", "_"), func(t *testing.T) {
			m, rep, err := Load(filepath.Join(refDir, layout), LoadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			t.Logf("report: %d loaded, ignored %v, warnings %v", rep.Loaded, rep.Ignored, rep.Warnings)
			compareOutputs(t, m, inputs, golden, 1e-4)
		})
	}
}

// The Go generator of deterministic weights must rebuild the reference's checkpoint bit
// for bit: base-size tests depend on it, since base weights are never stored.
func TestDeterministicWeightsEqualTheReferenceCheckpoint(t *testing.T) {
	dir := filepath.Join(refDir, "tiny")
	if _, err := os.Stat(dir); err != nil {
		t.Skip("no goldens:", err)
	}
	loaded, _, err := Load(dir, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer loaded.Close()
	parts := Parts{Vision: true, TextEncoder: true, TextDecoder: true, ITC: true, ITM: true, Temp: true}
	made := tinyModel(t, parts, 1)
	assertSameParams(t, made, loaded)
}

// baseReferenceModel is the reference's base checkpoint, rebuilt from the deterministic
// generator (base weights are never stored: 1.5 GB).
func baseReferenceModel(t *testing.T) *Model {
	t.Helper()
	if _, err := os.Stat(filepath.Join(refDir, "base")); err != nil {
		t.Skip("no goldens:", err)
	}
	cfg, err := FromHFConfig(filepath.Join(refDir, "base", "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(cfg, Parts{Vision: true, TextEncoder: true, TextDecoder: true, ITC: true, ITM: true, Temp: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	if err := m.InitDeterministic(2); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestBaseMatchesReference(t *testing.T) {
	m := baseReferenceModel(t)
	check := readRefTensors(t, filepath.Join(refDir, "base", "weights_check.safetensors"))
	for _, p := range m.Params() {
		first, ok1 := check[p.Name+".first"]
		sum, ok2 := check[p.Name+".sum"]
		if !ok1 || !ok2 {
			t.Fatalf("reference has no check of %s", p.Name)
		}
		want, _ := first.Float32s()
		got, _ := p.Tensor().Reshape(-1).Narrow(0, 0, int64(len(want))).Float32s()
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("%s[%d] = %v, reference %v", p.Name, i, got[i], want[i])
			}
		}
		ws, _ := sum.Item()
		gs, _ := p.Tensor().ToDType(torch.Float64).Sum(false).Item()
		if math.Abs(gs-ws) > 1e-6 {
			t.Fatalf("%s sums to %v, reference %v", p.Name, gs, ws)
		}
	}
	inputs := readRefTensors(t, filepath.Join(refDir, "base", "inputs.safetensors"))
	golden := readRefTensors(t, filepath.Join(refDir, "base", "golden.safetensors"))
	s := torch.NewScope()
	defer s.Close()
	out, err := m.ReferenceOutputs(s, inputsOf(inputs))
	if err != nil {
		t.Fatal(err)
	}
	// The reference keeps the decoder's first 3 positions (size budget).
	out["decoder.logits"] = out["decoder.logits"].Narrow(1, 0, golden["decoder.logits"].Size(1))
	for _, n := range []string{"vision.last_hidden_state", "text_unimodal.last_hidden_state", "itc.image_feat",
		"itc.text_feat", "itc.cosine", "itm.logits", "itm.prob", "decoder.logits"} {
		d := maxAbsDiff(t, n, out[n], golden[n])
		t.Logf("%-36s max |diff| %.3g", n, d)
		if d > 1e-3 {
			t.Errorf("%s differs from the reference by %.3g (> 1e-3)", n, d)
		}
	}
}
