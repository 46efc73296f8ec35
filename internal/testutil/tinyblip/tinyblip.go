// Package tinyblip makes the model fixtures of the pipeline tests: a deterministic random
// blip.Tiny checkpoint on disk and the settings of a run on it.
package tinyblip

import (
	"path/filepath"
	"testing"

	"github.com/capfilt/capfilt/blip"
	"github.com/capfilt/capfilt/blip/tokenizer"
	"github.com/capfilt/capfilt/internal/testutil/pipelinetest"
	"github.com/capfilt/capfilt/modelstage"
	"github.com/capfilt/capfilt/pipeline"
	"github.com/capfilt/capfilt/pipeline/spec"
	"github.com/capfilt/capfilt/shards"
	"github.com/capfilt/capfilt/synth"
)

// ModelDir writes a deterministic random blip.Tiny checkpoint with every part (so the
// captioner and the filter share it) and its vocabulary, in an HF directory.
func ModelDir(t testing.TB, seed uint64) string {
	t.Helper()
	tok, err := tokenizer.New(synth.TinyVocab(), tokenizer.BertUncased)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "tiny-blip")
	if _, err := modelstage.WriteRandomModel(dir, blip.Tiny(), tok, seed); err != nil {
		t.Fatal(err)
	}
	return dir
}

// RunSettings are the settings of a test run on one model: nucleus captions seeded by
// seed 7, CapFilt's default rule, the short waits of pipelinetest.FastRetries.
func RunSettings(t testing.TB, run string, inputs []string, output, model string) pipeline.RunSettings {
	t.Helper()
	out, err := shards.ParseURL(output)
	if err != nil {
		t.Fatal(err)
	}
	gen := spec.NucleusDefaults()
	gen.Seed = 7
	return pipeline.RunSettings{Run: run, Inputs: inputs, Output: out,
		Captioner: pipeline.ModelSpec{Path: model}, Filter: pipeline.ModelSpec{Path: model},
		Generation: gen, Rule: spec.DefaultRule(), Queue: pipelinetest.FastRetries()}
}
