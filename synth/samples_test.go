package synth

import (
	"bytes"
	"image/color"
	"io"
	"strings"
	"testing"

	"github.com/capfilt/capfilt/shards"
)

func TestSampleShardIsAWebDatasetTarOfKnownScenes(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteSampleShard(&buf, 3, SampleOptions{PerShard: 40, Width: 32, Height: 24, MismatchRate: 0.5, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	r := shards.OpenTar(&buf, "sample", shards.Limits{})
	vocab := map[string]bool{}
	for _, w := range TinyVocab() {
		vocab[w] = true
	}
	n, mismatched := 0, 0
	for {
		s, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n++
		if s.SkipReason != "" || !strings.HasPrefix(s.Key, "00003") || len(s.Image) == 0 || s.Width != 32 || s.Height != 24 {
			t.Fatalf("sample %+v", s)
		}
		for _, w := range strings.Fields(s.Caption) {
			if !vocab[w] {
				t.Fatalf("caption %q: %q is not in the tiny vocabulary", s.Caption, w)
			}
		}
		if s.Meta["caption_matches"] == false {
			mismatched++
		}
	}
	if n != 40 || mismatched < 10 || mismatched > 30 {
		t.Fatalf("%d samples, %d mismatched (rate 0.5)", n, mismatched)
	}
}

func TestRenderDrawsTheShapeWhereTheCaptionSays(t *testing.T) {
	bg := color.RGBA{1, 2, 3, 255}
	for _, tc := range []struct {
		scene  Scene
		x, y   int // a pixel inside the shape
		ox, oy int // a pixel outside it
	}{
		{Scene{Shape: "circle", Colour: "red", Position: "left", Large: true}, 25, 50, 75, 50},
		{Scene{Shape: "square", Colour: "blue", Position: "top"}, 50, 25, 50, 75},
		{Scene{Shape: "triangle", Colour: "green", Position: "middle", Large: true}, 50, 70, 50, 20},
	} {
		img := Render(tc.scene, 100, 100, bg)
		if got := img.RGBAAt(tc.x, tc.y); got != colours[tc.scene.Colour] {
			t.Errorf("%s: pixel (%d,%d) is %v", tc.scene.Caption(), tc.x, tc.y, got)
		}
		if got := img.RGBAAt(tc.ox, tc.oy); got != bg {
			t.Errorf("%s: pixel (%d,%d) is %v, want the background", tc.scene.Caption(), tc.ox, tc.oy, got)
		}
	}
}
