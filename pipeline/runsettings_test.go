package pipeline_test

import (
	"strings"
	"testing"

	"github.com/capfilt/capfilt/pipeline"
	"github.com/capfilt/capfilt/pipeline/spec"
	"github.com/capfilt/capfilt/shards"
)

// A run recorded before the output and scoring settings existed makes the same output as
// one that names their defaults; any other value is a difference a re-submit is refused for.
func TestOutputAndScoringSettingsAreComparedByWhatTheyMake(t *testing.T) {
	a := pipeline.RunSettings{Run: "r", Generation: spec.NucleusDefaults(), Rule: spec.DefaultRule(), Queue: spec.DefaultQueue()}
	b := a
	b.OutputFormat, b.ITMFirstToken = shards.OutputParquet, spec.ITMFirstEnc
	if d := a.Differences(b); d != "" || a.Format() != shards.OutputParquet {
		t.Fatalf("unset and default differ in %q (format %q)", d, a.Format())
	}
	b.OutputFormat, b.ITMFirstToken, b.HumanCaptions = shards.OutputWDS, spec.ITMFirstCLS, true
	b.Columns.Keep = []string{"similarity"}
	if d := a.Differences(b); d != "itm first token, parquet columns, human captions, output format" {
		t.Fatalf("differences %q", d)
	}
	if err := b.Validate(); err != nil {
		t.Fatalf("valid settings: %v", err)
	}
	for _, tc := range []struct {
		edit func(*pipeline.RunSettings)
		want string
	}{
		{func(r *pipeline.RunSettings) { r.OutputFormat = "tfrecord" }, `output-format "tfrecord": want parquet or wds`},
		{func(r *pipeline.RunSettings) { r.OutputFormat, r.OmitImages = shards.OutputWDS, true }, "needs its images"},
		{func(r *pipeline.RunSettings) { r.ITMFirstToken = "sep" }, `itm-first-token "sep": want enc or cls`},
	} {
		r := a
		tc.edit(&r)
		if err := r.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", r, err, tc.want)
		}
	}
}
