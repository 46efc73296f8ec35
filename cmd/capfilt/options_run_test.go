package main

import (
	"encoding/json"
	"fmt"
	"image/color"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/capfilt/capfilt/shards"
)

// The output and scoring flags reach the outputs: --human makes the input captions human
// ones, --itm-first-token is recorded in the Parquet's metadata with the build, and
// --output-format wds writes a WebDataset shard instead of Parquet.
func TestRunFlagsReachTheOutputs(t *testing.T) {
	dir := t.TempDir()
	model, in := filepath.Join(dir, "m"), filepath.Join(dir, "in")
	mustRun(t, "model", "random", "--preset", "tiny", "--out", model)
	mustRun(t, "sample-shards", "--out", in, "--shards", "1", "--per-shard", "4")
	run := func(out string, flags ...string) {
		mustRun(t, append([]string{"run", "--model", model, "--input", in + "/00000.tar", "--output", out, "--threads", "1"}, flags...)...)
	}

	pq := filepath.Join(dir, "pq")
	run(pq, "--human", "--itm-threshold", "0.99", "--itm-first-token", "cls")
	f, err := os.Open(filepath.Join(pq, "00000.parquet"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	cr, err := shards.OpenCleaned(io.NewSectionReader(f, 0, fi.Size()), f.Name(), shards.CleanedReadOptions{SkipImages: true})
	if err != nil {
		t.Fatal(err)
	}
	defer cr.Close()
	meta := cr.Meta()
	if meta.Extra["itm_first_token"] != "cls" || meta.Extra["human_captions"] != "true" || meta.Build != capfiltBuild() {
		t.Fatalf("metadata %+v: want itm_first_token cls, human captions and the build %q", meta, capfiltBuild())
	}
	rows := 0
	for {
		row, err := cr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		rows++
		if len(row.Captions) != 1 || row.Captions[0].Source != shards.SourceHuman {
			t.Fatalf("row %s keeps %+v: want its human caption alone (0.99 is beyond the random model)", row.Key, row.Captions)
		}
	}
	if rows == 0 {
		t.Fatal("no row: human captions are kept whatever their scores")
	}

	wds := filepath.Join(dir, "wds")
	run(wds, "--output-format", "wds", "--itm-threshold", "0")
	if _, err := os.Stat(filepath.Join(wds, "00000.parquet")); err == nil {
		t.Fatal("a wds run wrote Parquet")
	}
	tf, err := os.Open(filepath.Join(wds, "00000.tar"))
	if err != nil {
		t.Fatal(err)
	}
	defer tf.Close()
	r := shards.OpenTar(tf, tf.Name(), shards.Limits{})
	s, err := r.Next()
	if err != nil {
		t.Fatal(err)
	}
	var rec struct {
		Captions []struct{ Source string } `json:"captions"`
	}
	if err := json.Unmarshal(s.MetaJSON, &rec); err != nil || len(rec.Captions) == 0 || len(s.Image) == 0 || strings.TrimSpace(s.Caption) == "" {
		t.Fatalf("first sample %q: json %s (%v)", s.Key, s.MetaJSON, err)
	}
}

// score --itm-first-token cls gives HF's ITM numbers: other ITM, the same ITC.
func TestScoreITMFirstTokenChangesITMOnly(t *testing.T) {
	needGoldens(t)
	img := filepath.Join(t.TempDir(), "a.png")
	writePNG(t, img, 80, 60, color.RGBA{200, 10, 10, 255})
	scores := func(first string) (itm, itc float64) {
		code, out, stderr := runCLI(t, "score", "--model", filepath.Join(refDir, "tiny"), "--tokenizer", tinyVocab,
			"--image", img, "--text", "a red square", "--itm-first-token", first)
		var decision, text string
		if _, err := fmt.Sscanf(out, "itm %f  itc %f  %s %s", &itm, &itc, &decision, &text); code != 0 || err != nil {
			t.Fatalf("score --itm-first-token %s: exit %d %v\n%s\n%s", first, code, err, out, stderr)
		}
		return itm, itc
	}
	encITM, encITC := scores("enc")
	clsITM, clsITC := scores("cls")
	if encITM == clsITM || encITC != clsITC {
		t.Fatalf("enc: itm %v itc %v; cls: itm %v itc %v", encITM, encITC, clsITM, clsITC)
	}
}
