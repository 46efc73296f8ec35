package demo

import (
	"bytes"
	"encoding/xml"
	"image"
	"image/color"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/net/html"

	"github.com/capfilt/capfilt/shards"
	"github.com/capfilt/capfilt/synth"
	"github.com/capfilt/capfilt/trainer"
)

// reportRefs parses an HTML file and returns every URL it references (src, href) and
// the number of inline <svg> elements; a parse error fails the test.
func reportRefs(t *testing.T, path string) (refs []string, svgs int, text string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := html.Parse(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("%s does not parse as HTML: %v", path, err)
	}
	var b strings.Builder
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			if n.Data == "svg" {
				svgs++
			}
			for _, a := range n.Attr {
				if a.Key == "src" || a.Key == "href" || a.Key == "xlink:href" {
					refs = append(refs, a.Val)
				}
			}
		}
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	return refs, svgs, b.String()
}

// checkRefs fails on a reference that is neither a data: URI nor a file beside the report.
func checkRefs(t *testing.T, report string, refs []string) {
	t.Helper()
	for _, r := range refs {
		switch {
		case strings.HasPrefix(r, "data:"):
		case strings.Contains(r, "://") || strings.HasPrefix(r, "/"):
			t.Errorf("report references %q: not openable without a server", r)
		default:
			if _, err := os.Stat(filepath.Join(filepath.Dir(report), filepath.FromSlash(r))); err != nil {
				t.Errorf("report references %q, which does not exist: %v", r, err)
			}
		}
	}
}

func pngBytes(t *testing.T) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 4, 4))
	img.Set(1, 1, color.RGBA{200, 30, 30, 255})
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestReportIsOneFileWithTheTableChartsAndGallery(t *testing.T) {
	res := &Result{Recipe: QuickRecipe(), Seconds: 12}
	sr := seedWith(3, []float64{0.30, 0.32, 0.29, 0.40, 0.35}, []float64{1.0, 1.1, 1.2, 1.3, 0.9})
	sr.Training = []TrainingRun{{Name: "pretrain noisy web", Task: trainer.TaskPretrain, Steps: 20, History: []trainer.StepRecord{
		{Step: 10, ITC: 4, ITM: 0.7, LM: 3, Total: 7.7}, {Step: 20, ITC: 3, ITM: 0.6, LM: 2, Total: 5.6}}}}
	hist := shards.NewHistogram(0, 1, shards.HistogramBins)
	hist.Add(0.9)
	sr.CapFilt = append(sr.CapFilt, CapFiltRun{Name: "nucleus-all", ITM: map[string]*shards.Histogram{shards.SourceWeb: hist},
		WebTrueITM: make([]float64, shards.HistogramBins), WebNoiseITM: make([]float64, shards.HistogramBins)})
	sr.CapFilt[0].ITM = map[string]*shards.Histogram{shards.SourceSynthetic: hist}
	sr.Gallery = []GalleryItem{{Key: "000000001", Image: dataURI(pngBytes(t)), Kind: synth.KindWrongAttribute, Detail: "colour: red -> blue",
		Clean: "a small red circle", Web: GalleryCaption{Text: "a small blue <circle>", ITM: 0.1}, Synthetic: GalleryCaption{Text: "a small red circle", ITM: 0.9, Kept: true}}}
	res.Seeds = []SeedResult{sr}
	res.Table = NewTable(res.Seeds)
	res.Stages = []StageTime{{Seed: 3, Name: "synth", Seconds: 0.4}}
	path := filepath.Join(t.TempDir(), reportName)
	if err := WriteReport(path, res); err != nil {
		t.Fatal(err)
	}
	refs, svgs, text := reportRefs(t, path)
	checkRefs(t, path, refs)
	if len(refs) != 1 || !strings.HasPrefix(refs[0], "data:image/png;base64,") {
		t.Errorf("references %v, want the gallery image as a PNG data: URI", refs)
	}
	// A loss curve and two histograms.
	if svgs != 3 {
		t.Errorf("%d inline SVGs, want 3", svgs)
	}
	for _, want := range []string{"Table 1 in miniature", "+C+F beam", "40.0", "a small blue <circle>", "colour: red -&gt; blue", "pretrain noisy web (20 steps", "threshold 0.50"} {
		if !strings.Contains(text, want) && !strings.Contains(readFile(t, path), want) {
			t.Errorf("report lacks %q", want)
		}
	}
	raw := readFile(t, path)
	if !strings.Contains(raw, "<td>&nbsp;&nbsp;wrong shape</td><td>5</td><td>1</td><td>20.0%</td>") {
		t.Errorf("the filter table does not split the wrong attributes by what was changed")
	}
	if !strings.Contains(raw, `class="cap rejected">web: a small blue &lt;circle&gt;`) || !strings.Contains(raw, `class="cap kept">synthetic: a small red circle`) {
		t.Errorf("the gallery does not mark the rejected web text red and the kept caption green (or does not escape the text)")
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// Each chart is well-formed XML on its own: SVG inline in HTML is parsed leniently,
// but a viewer opening the element alone is not.
func TestChartsAreWellFormedSVG(t *testing.T) {
	for name, svg := range map[string]string{
		"line":       LineChart("loss <total>", "step", []Series{{Name: "a&b", Colour: "#000", X: []float64{1, 2, 3}, Y: []float64{3, 2, 1}}}),
		"empty line": LineChart("nothing", "step", nil),
		"histogram": Histogram("ITM", "P(match)", 0, 1, []Series{{Name: "web", Colour: "#0f0", Y: []float64{1, 0, 5}},
			{Name: "synthetic", Colour: "#f00", Y: []float64{2, 2, 2}}}, 0.5),
	} {
		d := xml.NewDecoder(strings.NewReader(svg))
		for {
			_, err := d.Token()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Errorf("%s chart is not well-formed: %v\n%s", name, err, svg)
				break
			}
		}
		if !strings.HasPrefix(svg, "<svg ") || !strings.HasSuffix(svg, "</svg>") {
			t.Errorf("%s chart is not one <svg> element", name)
		}
	}
}

func TestHistogramMarksTheThresholdWhereItIs(t *testing.T) {
	svg := Histogram("ITM", "P(match)", 0, 1, []Series{{Name: "web", Colour: "#0f0", Y: []float64{1, 2}}}, 0.5)
	want := `<line x1="197.0"` // padL + 0.5·plotW
	if !strings.Contains(svg, want) {
		t.Errorf("threshold line not at the middle of the plot (%s):\n%s", want, svg)
	}
}
