// Package tinyblip makes the model fixtures of the pipeline tests: a deterministic random
// blip.Tiny checkpoint on disk and the settings of a run on it.
package tinyblip

import (
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/capfilt/capfilt/blip/tokenizer"

	"github.com/capfilt/capfilt/blip"
	"github.com/capfilt/capfilt/captioner"
	"github.com/capfilt/capfilt/filter"
	"github.com/capfilt/capfilt/pipeline"
	"github.com/capfilt/capfilt/synth"
)

// ModelDir writes a deterministic random blip.Tiny checkpoint with every part (so the
// captioner and the filter share it) and its vocabulary, in an HF directory.
func ModelDir(t testing.TB, seed uint64) string {
	t.Helper()
	m, err := blip.New(blip.Tiny(), blip.AllParts())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.InitDeterministic(seed); err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.New(synth.TinyVocab(), tokenizer.BertUncased)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "tiny-blip")
	if err := m.SaveHF(dir, tok); err != nil {
		t.Fatal(err)
	}
	return dir
}

// RunSettings are the settings of a test run on one model: nucleus captions seeded by
// seed 7, CapFilt's default rule.
func RunSettings(t testing.TB, run string, inputs []string, output, model string) pipeline.RunSettings {
	t.Helper()
	gen := captioner.NucleusDefaults()
	gen.Seed = 7
	raw, err := json.Marshal(gen)
	if err != nil {
		t.Fatal(err)
	}
	rule := filter.DefaultRule()
	return pipeline.RunSettings{Run: run, Inputs: inputs, Output: output,
		Captioner: pipeline.ModelSpec{Path: model}, Filter: pipeline.ModelSpec{Path: model},
		Generation: raw, Seed: gen.Seed,
		Rule: pipeline.RuleSpec{Web: rule.Web.String(), Synthetic: rule.Synthetic.String(), FilterHuman: rule.FilterHuman}}
}
