package main

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestEvalCaptionPrintsTheTableAndWritesJSON(t *testing.T) {
	dir := t.TempDir()
	preds := filepath.Join(dir, "res.json")
	refs := filepath.Join(dir, "ann.json")
	out := filepath.Join(dir, "scores.json")
	os.WriteFile(preds, []byte(`[{"image_id": 1, "caption": "a man riding a horse"}, {"image_id": "2", "caption": "two dogs in the snow"}]`), 0o644)
	os.WriteFile(refs, []byte(`{"images": [{"id": 1, "file_name": "1.jpg"}, {"id": 2, "file_name": "2.jpg"}, {"id": 3}],
		"annotations": [{"image_id": 1, "caption": "A man riding a horse."}, {"image_id": 1, "caption": "A person on a horse."},
		{"image_id": 2, "caption": "Two dogs play in the snow."}, {"image_id": 3, "caption": "A bus."}]}`), 0o644)
	code, stdout, stderr := runCLI(t, "eval", "caption", "--predictions", preds, "--references", refs, "--out", out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"BLEU-1", "CIDEr-D", "images", "1 reference images have no prediction"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
	var report struct {
		References string
		Scores     struct {
			Bleu1      float64 `json:"Bleu_1"`
			Bleu4      float64 `json:"Bleu_4"`
			CIDEr      float64
			Images     int
			References int
			PerImage   []struct {
				ImageID string `json:"image_id"`
			} `json:"per_image"`
		}
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &report); err != nil {
		t.Fatal(err)
	}
	s := report.Scores
	// Image 1 matches a reference word for word, so BLEU-1 and CIDEr-D are high but
	// below their maxima (image 2 misses "play").
	if s.Images != 2 || s.References != 3 || len(s.PerImage) != 2 || report.References != refs {
		t.Errorf("report %+v", report)
	}
	if !(s.Bleu1 > 0.8 && s.Bleu1 < 1) || !(s.CIDEr > 0) || math.IsNaN(s.Bleu4) {
		t.Errorf("scores %+v", s)
	}
}

func TestEvalCaptionBadInputsNameTheFileAndField(t *testing.T) {
	dir := t.TempDir()
	preds := filepath.Join(dir, "res.json")
	refs := filepath.Join(dir, "ann.json")
	os.WriteFile(preds, []byte(`[{"image_id": 1, "text": "a caption in the wrong field"}]`), 0o644)
	os.WriteFile(refs, []byte(`[{"image": "1.jpg", "caption": "a man"}]`), 0o644)
	code, _, stderr := runCLI(t, "eval", "caption", "--predictions", preds, "--references", refs)
	if code != 1 || !strings.Contains(stderr, "res.json: entry 0") || !strings.Contains(stderr, `"caption"`) {
		t.Errorf("exit %d: %s", code, stderr)
	}
	os.WriteFile(preds, []byte(`[{"image_id": 5, "caption": "x"}]`), 0o644)
	code, _, stderr = runCLI(t, "eval", "caption", "--predictions", preds, "--references", refs)
	if code != 1 || !strings.Contains(stderr, "image_id 5") || !strings.Contains(stderr, "ann.json") {
		t.Errorf("exit %d: %s", code, stderr)
	}
	if code, _, stderr := runCLI(t, "eval", "caption", "--predictions", preds); code != 2 {
		t.Errorf("missing --references: exit %d: %s", code, stderr)
	}
}
