package imageproc

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"image"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The goldens under testdata/image come from testdata/ref/pil_resize.py (Pillow 9.4
// with libjpeg-turbo and libwebp): each input file, PIL's convert("RGB") of it and
// PIL's bicubic resizes of that.

type pilManifest struct {
	Pillow     string `json:"pillow"`
	Normalized struct {
		Source, File string
	} `json:"normalized"`
	Cases []pilCase `json:"cases"`
}

type pilCase struct {
	Name        string `json:"name"`
	Input       string `json:"input"`
	Format      string `json:"format"`
	PILMode     string `json:"pil_mode"`
	Width       int    `json:"width"`
	Height      int    `json:"height"`
	Decoded     string `json:"decoded"`
	DecodeExact bool   `json:"decode_exact"`
	Resized     []struct {
		Width, Height int
		File          string
	} `json:"resized"`
}

const goldenDir = "testdata/image"

func loadManifest(t testing.TB) pilManifest {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(goldenDir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m pilManifest
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("manifest: %v", err)
	}
	return m
}

func readGolden(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(goldenDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// loadRGBPNG reads one of PIL's 8-bit RGB PNGs with image/png alone, so the
// reference pixels do not pass through the code under test.
func loadRGBPNG(t testing.TB, name string) *RGBImage {
	t.Helper()
	m, err := png.Decode(bytes.NewReader(readGolden(t, name)))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	rgba, ok := m.(*image.RGBA)
	if !ok {
		t.Fatalf("%s: decoded as %T, want 8-bit RGB", name, m)
	}
	b := rgba.Bounds()
	out := NewRGBImage(b.Dx(), b.Dy())
	for i := 0; i < b.Dx()*b.Dy(); i++ {
		copy(out.Pix[3*i:3*i+3], rgba.Pix[4*i:4*i+3])
	}
	return out
}

// agreement counts how many samples of got equal want, and how many are within ±1.
type agreement struct {
	n, exact, within1, maxDiff int
}

func compareRGB(got, want *RGBImage) (agreement, error) {
	if got.Width != want.Width || got.Height != want.Height {
		return agreement{}, fmt.Errorf("size %dx%d, want %dx%d", got.Width, got.Height, want.Width, want.Height)
	}
	a := agreement{n: len(got.Pix)}
	for i, v := range got.Pix {
		d := int(v) - int(want.Pix[i])
		d = max(d, -d)
		if d == 0 {
			a.exact++
		}
		if d <= 1 {
			a.within1++
		}
		a.maxDiff = max(a.maxDiff, d)
	}
	return a, nil
}

func (a agreement) String() string {
	return fmt.Sprintf("%d samples: %.3f%% exact, %.3f%% within ±1, max diff %d",
		a.n, 100*float64(a.exact)/float64(a.n), 100*float64(a.within1)/float64(a.n), a.maxDiff)
}

func TestDecodeImageMatchesPILConvertRGB(t *testing.T) {
	m := loadManifest(t)
	var lossy agreement
	for _, c := range m.Cases {
		t.Run(c.Name, func(t *testing.T) {
			got, format, err := Decode(readGolden(t, c.Input), ImageLimits{})
			if err != nil {
				t.Fatalf("Decode(%s): %v", c.Input, err)
			}
			if format != c.Format {
				t.Errorf("format %q, want %q", format, c.Format)
			}
			a, err := compareRGB(got, loadRGBPNG(t, c.Decoded))
			if err != nil {
				t.Fatal(err)
			}
			if c.DecodeExact {
				if a.exact != a.n {
					t.Errorf("PIL mode %s: %v, want every sample exact", c.PILMode, a)
				}
				return
			}
			// JPEG: Go's IDCT is not libjpeg's islow, so a sample may be off by a few
			// units; upsampling and colour conversion follow libjpeg exactly.
			t.Logf("PIL mode %s: %v", c.PILMode, a)
			lossy.n, lossy.exact, lossy.within1 = lossy.n+a.n, lossy.exact+a.exact, lossy.within1+a.within1
			lossy.maxDiff = max(lossy.maxDiff, a.maxDiff)
			if float64(a.within1) < 0.99*float64(a.n) || a.maxDiff > 8 {
				t.Errorf("PIL mode %s: %v, want 99%% within ±1 and no sample off by more than 8", c.PILMode, a)
			}
		})
	}
	t.Logf("all JPEG cases: %v", lossy)
}

func TestResizeBicubicMatchesPIL(t *testing.T) {
	m := loadManifest(t)
	var total agreement
	for _, c := range m.Cases {
		for _, r := range c.Resized {
			t.Run(fmt.Sprintf("%s_to_%dx%d", c.Name, r.Width, r.Height), func(t *testing.T) {
				// Resize PIL's own decode, so JPEG decoder differences stay out of it.
				src := loadRGBPNG(t, c.Decoded)
				a, err := compareRGB(ResizeBicubic(src, r.Width, r.Height), loadRGBPNG(t, r.File))
				if err != nil {
					t.Fatal(err)
				}
				total.n, total.exact, total.within1 = total.n+a.n, total.exact+a.exact, total.within1+a.within1
				total.maxDiff = max(total.maxDiff, a.maxDiff)
				if a.exact != a.n {
					t.Errorf("%dx%d -> %dx%d: %v, want PIL's output exactly", src.Width, src.Height, r.Width, r.Height, a)
				}
			})
		}
	}
	t.Logf("all resize cases: %v", total)
}

func TestNormalizeMatchesTorchvisionBitForBit(t *testing.T) {
	m := loadManifest(t)
	img := loadRGBPNG(t, m.Normalized.Source)
	raw := readGolden(t, m.Normalized.File)
	want := make([]float32, len(raw)/4)
	if err := binary.Read(bytes.NewReader(raw), binary.LittleEndian, want); err != nil {
		t.Fatal(err)
	}
	got := Normalize(img, CLIPMean, CLIPStd)
	if len(got) != len(want) {
		t.Fatalf("len %d, want %d", len(got), len(want))
	}
	for i := range got {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			c, p := i/(img.Width*img.Height), i%(img.Width*img.Height)
			t.Fatalf("channel %d pixel %d: %v (%08x), want %v (%08x)", c, p, got[i], math.Float32bits(got[i]), want[i], math.Float32bits(want[i]))
		}
	}
}

func TestPreprocessJPEGAgreesWithPILPipeline(t *testing.T) {
	m := loadManifest(t)
	for _, c := range m.Cases {
		if c.Name != "photo" {
			continue
		}
		got, w, h, err := Preprocess(readGolden(t, c.Input), 384, ImageLimits{})
		if err != nil {
			t.Fatal(err)
		}
		if w != c.Width || h != c.Height {
			t.Errorf("original size %dx%d, want %dx%d", w, h, c.Width, c.Height)
		}
		want := Normalize(loadRGBPNG(t, c.Resized[0].File), CLIPMean, CLIPStd)
		exact, worst := 0, 0.0
		for i := range got {
			d := math.Abs(float64(got[i] - want[i]))
			if d == 0 {
				exact++
			}
			worst = max(worst, d)
		}
		t.Logf("640x480 JPEG -> 3x384x384: %.3f%% of values identical to PIL+torchvision, max |diff| %.4f", 100*float64(exact)/float64(len(got)), worst)
		// One unit of 8-bit input is 1/255/std ≈ 0.0150 after normalisation.
		if worst > 4.0/255/0.26 || float64(exact) < 0.95*float64(len(got)) {
			t.Errorf("tensor differs from the PIL pipeline more than decoder rounding explains")
		}
	}
}

func TestCMYKConvertsLikePIL(t *testing.T) {
	// Values read off Pillow 9.4: Image.new("CMYK", (1, 1), c).convert("RGB").
	cases := []struct{ c, m, y, k, r, g, b uint8 }{
		{100, 50, 0, 60, 119, 157, 195},
		{255, 0, 10, 0, 0, 255, 245},
		{0, 0, 0, 255, 0, 0, 0},
		{0, 0, 0, 0, 255, 255, 255},
	}
	for _, c := range cases {
		r, g, b := cmykToRGB(c.c, c.k), cmykToRGB(c.m, c.k), cmykToRGB(c.y, c.k)
		if r != c.r || g != c.g || b != c.b {
			t.Errorf("CMYK(%d,%d,%d,%d) -> (%d,%d,%d), want (%d,%d,%d)", c.c, c.m, c.y, c.k, r, g, b, c.r, c.g, c.b)
		}
	}
}

// pngHeaderOnly is a PNG signature and a valid IHDR declaring w×h RGB, and nothing
// else: a decompression bomb's calling card.
func pngHeaderOnly(w, h uint32) []byte {
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], w)
	binary.BigEndian.PutUint32(ihdr[4:], h)
	ihdr[8], ihdr[9] = 8, 2
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	binary.Write(&b, binary.BigEndian, uint32(len(ihdr)))
	chunk := append([]byte("IHDR"), ihdr...)
	b.Write(chunk)
	binary.Write(&b, binary.BigEndian, crc32.ChecksumIEEE(chunk))
	return b.Bytes()
}

// withJPEGSize rewrites the dimensions in a baseline JPEG's SOF0 marker.
func withJPEGSize(t *testing.T, jpg []byte, w, h uint16) []byte {
	t.Helper()
	out := append([]byte{}, jpg...)
	i := bytes.Index(out, []byte{0xFF, 0xC0})
	if i < 0 {
		t.Fatal("no SOF0 marker")
	}
	binary.BigEndian.PutUint16(out[i+5:], h)
	binary.BigEndian.PutUint16(out[i+7:], w)
	return out
}

func TestDecodeImageRefusesBombsBeforeDecoding(t *testing.T) {
	photo := readGolden(t, "photo.jpg")
	gif := append([]byte{}, readGolden(t, "anim.gif")...)
	binary.LittleEndian.PutUint16(gif[6:], 65535)
	binary.LittleEndian.PutUint16(gif[8:], 65535)
	cases := []struct {
		name   string
		data   []byte
		limits ImageLimits
	}{
		{"png declaring 100000x100000", pngHeaderOnly(100000, 100000), ImageLimits{}},
		{"png just over the default", pngHeaderOnly(DefaultMaxPixels/7+1, 7), ImageLimits{}},
		{"jpeg declaring 65500x65500", withJPEGSize(t, photo, 65500, 65500), ImageLimits{}},
		{"gif screen of 65535x65535", gif, ImageLimits{}},
		{"real photo over a custom limit", photo, ImageLimits{MaxPixels: 640*480 - 1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := Decode(c.data, c.limits)
			if !errors.Is(err, ErrImageTooLarge) {
				t.Fatalf("err = %v, want ErrImageTooLarge", err)
			}
			if !strings.Contains(err.Error(), "pixels") {
				t.Errorf("error %q does not give the pixel count", err)
			}
		})
	}
	if _, _, err := Decode(photo, ImageLimits{MaxPixels: 640 * 480}); err != nil {
		t.Errorf("photo at exactly the limit: %v", err)
	}
}

func TestDecodeImageErrorsNameFormatAndReason(t *testing.T) {
	photo := readGolden(t, "photo.jpg")
	noise := readGolden(t, "rgb_noise.png")
	cases := []struct {
		name   string
		data   []byte
		reason error
		want   string
	}{
		{"empty", nil, ErrImageFormat, "0 bytes"},
		{"text", []byte("<html>not an image</html>"), ErrImageFormat, "3c 68 74 6d"},
		{"truncated jpeg", photo[:len(photo)/2], ErrImageCorrupt, "decode jpeg"},
		{"truncated png", noise[:len(noise)/2], ErrImageCorrupt, "decode png"},
		{"png without pixel data", pngHeaderOnly(4, 4), ErrImageCorrupt, "decode png"},
		{"png of zero width", pngHeaderOnly(0, 4), ErrImageCorrupt, "png"},
		{"jpeg header cut", photo[:20], ErrImageCorrupt, "decode jpeg header"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			img, _, err := Decode(c.data, ImageLimits{})
			if img != nil || !errors.Is(err, c.reason) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Decode = %v, %v; want nil and an error wrapping %v that mentions %q", img, err, c.reason, c.want)
			}
		})
	}
}

func TestResizeBicubicKeepsConstantImagesConstant(t *testing.T) {
	for _, size := range [][4]int{{7, 5, 384, 384}, {640, 480, 384, 384}, {3, 300, 1, 17}, {10, 10, 10, 3}} {
		src := NewRGBImage(size[0], size[1])
		for i := range src.Pix {
			src.Pix[i] = []uint8{200, 17, 255}[i%3]
		}
		out := ResizeBicubic(src, size[2], size[3])
		for i, v := range out.Pix {
			if want := []uint8{200, 17, 255}[i%3]; v != want {
				t.Fatalf("%dx%d -> %dx%d: sample %d = %d, want %d", size[0], size[1], size[2], size[3], i, v, want)
			}
		}
	}
}

func TestResizeBicubicToTheSameSizeCopies(t *testing.T) {
	src := loadRGBPNG(t, "rgb_noise.decoded.png")
	out := ResizeBicubic(src, src.Width, src.Height)
	if !bytes.Equal(out.Pix, src.Pix) {
		t.Fatal("same-size resize changed pixels")
	}
	out.Pix[0]++
	if out.Pix[0] == src.Pix[0] {
		t.Fatal("same-size resize shares its pixels with the source")
	}
}

func TestResizeBicubicDegenerateSizesDoNotPanic(t *testing.T) {
	src := loadRGBPNG(t, "one_pixel.decoded.png")
	for _, wh := range [][2]int{{0, 5}, {5, 0}, {-1, -1}} {
		if out := ResizeBicubic(src, wh[0], wh[1]); out.Width != 0 || out.Height != 0 || len(out.Pix) != 0 {
			t.Errorf("ResizeBicubic to %dx%d = %dx%d with %d samples, want empty", wh[0], wh[1], out.Width, out.Height, len(out.Pix))
		}
	}
	if out := ResizeBicubic(NewRGBImage(0, 0), 3, 2); out.Width != 3 || out.Height != 2 || len(out.Pix) != 18 {
		t.Errorf("ResizeBicubic of an empty image = %dx%d", out.Width, out.Height)
	}
}

func TestPreprocessBatchIsolatesBadImages(t *testing.T) {
	good1, good2 := readGolden(t, "photo.jpg"), readGolden(t, "rgb_noise.png")
	images := [][]byte{good1, []byte("junk"), good2, pngHeaderOnly(100000, 100000)}
	const size = 32
	per := 3 * size * size
	dst := make([]float32, 0, 10*per)
	batch, results, err := PreprocessBatch(dst, images, size, ImageLimits{}, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(batch) != len(images)*per || &batch[:1][0] != &dst[:1][0] {
		t.Fatalf("batch len %d (want %d), reused dst: %v", len(batch), len(images)*per, &batch[:1][0] == &dst[:1][0])
	}
	for i, want := range []error{nil, ErrImageFormat, nil, ErrImageTooLarge} {
		r := results[i]
		slot := batch[i*per : (i+1)*per]
		if want == nil {
			single, w, h, err := Preprocess(images[i], size, ImageLimits{})
			if r.Err != nil || err != nil || r.Width != w || r.Height != h {
				t.Fatalf("image %d: result %+v, single %dx%d %v", i, r, w, h, err)
			}
			for j := range slot {
				if slot[j] != single[j] {
					t.Fatalf("image %d value %d: batch %v, single %v", i, j, slot[j], single[j])
				}
			}
			continue
		}
		if !errors.Is(r.Err, want) {
			t.Errorf("image %d: err %v, want %v", i, r.Err, want)
		}
		for _, v := range slot {
			if v != 0 {
				t.Fatalf("image %d: refused image left non-zero values in its slot", i)
			}
		}
	}
	if _, _, err := PreprocessBatch(nil, images, 0, ImageLimits{}, 1); err == nil {
		t.Error("size 0 accepted")
	}
}

// BenchmarkPreprocess640x480JPEG is BLIP's inference transform on a typical web
// photo: decode a 640×480 JPEG, resize to 384×384, normalise.
func BenchmarkPreprocess640x480JPEG(b *testing.B) {
	data := readGolden(b, "photo.jpg")
	dst := make([]float32, 3*384*384)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, _, err := preprocessInto(dst, data, 384, ImageLimits{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "images/s")
}

// BenchmarkPreprocessBatch64 runs a batch of 64 such photos on every core.
func BenchmarkPreprocessBatch64(b *testing.B) {
	data := readGolden(b, "photo.jpg")
	images := make([][]byte, 64)
	for i := range images {
		images[i] = data
	}
	var dst []float32
	for b.Loop() {
		var err error
		if dst, _, err = PreprocessBatch(dst, images, 384, ImageLimits{}, 0); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(images))/b.Elapsed().Seconds(), "images/s")
}

// BenchmarkResizeBicubic640x480To384 isolates the resize of the preprocessing path.
func BenchmarkResizeBicubic640x480To384(b *testing.B) {
	src := loadRGBPNG(b, "photo.decoded.png")
	for b.Loop() {
		ResizeBicubic(src, 384, 384)
	}
}
