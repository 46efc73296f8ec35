package shards

import (
	"archive/tar"
	"bytes"
	"errors"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"runtime"
	"strings"
	"testing"
)

// tarMember is one member of a test shard; typeflag 0 means a regular file.
type tarMember struct {
	name     string
	data     string
	typeflag byte
}

func makeTar(t testing.TB, members ...tarMember) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, m := range members {
		hdr := &tar.Header{Name: m.name, Mode: 0o644, Size: int64(len(m.data)), Typeflag: m.typeflag, Format: tar.FormatPAX}
		if m.typeflag == 0 {
			hdr.Typeflag = tar.TypeReg
		}
		if hdr.Typeflag == tar.TypeSymlink {
			hdr.Linkname, hdr.Size = "/etc/passwd", 0
		}
		if hdr.Typeflag == tar.TypeDir {
			hdr.Size = 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatalf("tar header %q: %v", m.name, err)
		}
		if hdr.Size > 0 {
			if _, err := tw.Write([]byte(m.data)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func testJPEG(t testing.TB, w, h int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.RGBA{uint8(x * 7), uint8(y * 5), 90, 255})
		}
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 80}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func testPNG(t testing.TB, w, h int) []byte {
	t.Helper()
	img := image.NewGray(image.Rect(0, 0, w, h))
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// readSamples drains a reader; err is the first error other than io.EOF.
func readSamples(r SampleReader) (samples []Sample, err error) {
	for {
		s, err := r.Next()
		if err == io.EOF {
			return samples, nil
		}
		if err != nil {
			return samples, err
		}
		samples = append(samples, s)
	}
}

func TestTarYieldsImg2datasetSamplesInOrder(t *testing.T) {
	jpg, pngBytes := testJPEG(t, 32, 24), testPNG(t, 8, 8)
	shard := makeTar(t,
		tarMember{name: "000000000.jpg", data: string(jpg)},
		tarMember{name: "000000000.txt", data: "  a red square on grass \n"},
		tarMember{name: "000000000.json", data: `{"url":"http://x/0.jpg","width":32,"height":24,"caption":"a red square on grass","status":"success"}`},
		tarMember{name: "000000001.txt", data: "caption before image"},
		tarMember{name: "000000001.cls", data: "3"}, // other members neither form nor split samples
		tarMember{name: "000000001.PNG", data: string(pngBytes)},
		tarMember{name: "./folder/", typeflag: tar.TypeDir},
		tarMember{name: "./folder/img.v2.final.webp", data: "RIFF....WEBPVP8 "},
		tarMember{name: "./folder/img.v2.final.txt", data: "keys keep their dots and folders"},
	)
	got, err := readSamples(OpenTar(bytes.NewReader(shard), "s.tar", Limits{}))
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	want := []Sample{
		{Key: "000000000", URL: "http://x/0.jpg", Image: jpg, ImageExt: "jpg", Caption: "a red square on grass", Width: 32, Height: 24},
		{Key: "000000001", Image: pngBytes, ImageExt: "png", Caption: "caption before image"},
		{Key: "folder/img.v2.final", Image: []byte("RIFF....WEBPVP8 "), ImageExt: "webp", Caption: "keys keep their dots and folders"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d samples, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Key != w.Key || g.URL != w.URL || !bytes.Equal(g.Image, w.Image) || g.ImageExt != w.ImageExt ||
			g.Caption != w.Caption || g.Width != w.Width || g.Height != w.Height || g.SkipReason != "" || g.CaptionTruncated {
			t.Errorf("sample %d = {%q %q %d bytes %q %q %dx%d skip %q}, want {%q %q %d bytes %q %q %dx%d}", i,
				g.Key, g.URL, len(g.Image), g.ImageExt, g.Caption, g.Width, g.Height, g.SkipReason,
				w.Key, w.URL, len(w.Image), w.ImageExt, w.Caption, w.Width, w.Height)
		}
	}
	if got[0].Meta["status"] != "success" {
		t.Errorf("KEY.json not kept as Meta: %v", got[0].Meta)
	}
}

func TestTarReportsUnusableKeysWithTheirReason(t *testing.T) {
	jpg := string(testJPEG(t, 4, 4))
	cases := []struct {
		name    string
		members []tarMember
		lim     Limits
		reason  string
	}{
		{"no image", []tarMember{{name: "k.txt", data: "cap"}, {name: "k.json", data: "{}"}}, Limits{}, SkipMissingImage},
		{"no caption", []tarMember{{name: "k.jpg", data: jpg}}, Limits{}, SkipMissingCaption},
		{"empty caption", []tarMember{{name: "k.jpg", data: jpg}, {name: "k.txt", data: " \n\t"}}, Limits{}, SkipEmptyCaption},
		{"latin-1 caption", []tarMember{{name: "k.jpg", data: jpg}, {name: "k.txt", data: "caf\xe9"}}, Limits{}, SkipNonUTF8Caption},
		{"image over the limit", []tarMember{{name: "k.jpg", data: jpg}, {name: "k.txt", data: "c"}}, Limits{MaxMemberBytes: 100}, SkipMemberTooLarge},
		{"json over the limit", []tarMember{{name: "k.jpg", data: jpg}, {name: "k.txt", data: "c"}, {name: "k.json", data: `{"a":"0123456789"}`}}, Limits{MaxMetadataBytes: 5}, SkipMemberTooLarge},
		{"climbing name", []tarMember{{name: "../../etc/k.jpg", data: jpg}, {name: "../../etc/k.txt", data: "c"}}, Limits{}, SkipUnsafePath},
		{"absolute name", []tarMember{{name: "/tmp/k.jpg", data: jpg}, {name: "/tmp/k.txt", data: "c"}}, Limits{}, SkipUnsafePath},
		{"symlinked image", []tarMember{{name: "k.jpg", typeflag: tar.TypeSymlink}, {name: "k.txt", data: "c"}}, Limits{}, SkipUnsupportedMember},
		{"broken json", []tarMember{{name: "k.jpg", data: jpg}, {name: "k.txt", data: "c"}, {name: "k.json", data: "{not json"}}, Limits{}, SkipBadMetadata},
		{"json not an object", []tarMember{{name: "k.jpg", data: jpg}, {name: "k.txt", data: "c"}, {name: "k.json", data: "[1,2]"}}, Limits{}, SkipBadMetadata},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			shard := makeTar(t, append(c.members,
				tarMember{name: "next.jpg", data: "tiny"}, tarMember{name: "next.txt", data: "the shard goes on"})...)
			got, err := readSamples(OpenTar(bytes.NewReader(shard), "s.tar", c.lim))
			if err != nil {
				t.Fatalf("a bad sample ended the shard: %v", err)
			}
			if len(got) != 2 || got[0].SkipReason != c.reason || got[1].SkipReason != "" || got[1].Caption != "the shard goes on" {
				t.Fatalf("got %d samples %+v; want one skipped for %q, then a good one", len(got), skipReasons(got), c.reason)
			}
		})
	}
}

func skipReasons(samples []Sample) []string {
	var out []string
	for _, s := range samples {
		out = append(out, s.Key+":"+s.SkipReason)
	}
	return out
}

func TestTarTruncatesLongCaptionsAtARuneBoundary(t *testing.T) {
	long := strings.Repeat("é", 3000) // 6000 bytes, two per rune
	shard := makeTar(t, tarMember{name: "k.jpg", data: "img"}, tarMember{name: "k.txt", data: long})
	got, err := readSamples(OpenTar(bytes.NewReader(shard), "s.tar", Limits{MaxCaptionBytes: 4095}))
	if err != nil || len(got) != 1 {
		t.Fatalf("read: %v, %d samples", err, len(got))
	}
	s := got[0]
	if !s.CaptionTruncated || s.SkipReason != "" || len(s.Caption) != 4094 || s.Caption != long[:4094] {
		t.Fatalf("truncated=%v skip=%q len=%d; want a 4094-byte valid prefix", s.CaptionTruncated, s.SkipReason, len(s.Caption))
	}
}

func TestTarKeyThatReturnsLaterIsANewSample(t *testing.T) {
	shard := makeTar(t,
		tarMember{name: "a.jpg", data: "1"}, tarMember{name: "b.txt", data: "b"},
		tarMember{name: "a.txt", data: "late caption"},
	)
	got, err := readSamples(OpenTar(bytes.NewReader(shard), "s.tar", Limits{}))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"a:" + SkipMissingCaption, "b:" + SkipMissingImage, "a:" + SkipMissingImage}; strings.Join(skipReasons(got), " ") != strings.Join(want, " ") {
		t.Fatalf("samples %v, want %v", skipReasons(got), want)
	}
}

func TestTruncatedTarReportsWhatItReadAndWhere(t *testing.T) {
	jpg := string(testJPEG(t, 16, 16))
	shard := makeTar(t,
		tarMember{name: "0.jpg", data: jpg}, tarMember{name: "0.txt", data: "first"},
		tarMember{name: "1.jpg", data: jpg}, tarMember{name: "1.txt", data: "second"},
		tarMember{name: "2.jpg", data: jpg}, tarMember{name: "2.txt", data: "third"},
	)
	// Where member 2.jpg's data starts: find it by its bytes after the first two copies.
	second := bytes.Index(shard, []byte(jpg)) + len(jpg)
	third := second + bytes.Index(shard[second:], []byte(jpg))
	third += bytes.Index(shard[third+len(jpg):], []byte(jpg)) + len(jpg)

	t.Run("inside a member", func(t *testing.T) {
		got, err := readSamples(OpenTar(bytes.NewReader(shard[:third+100]), "s.tar", Limits{}))
		if len(got) != 3 || got[0].Caption != "first" || got[1].Caption != "second" || got[2].SkipReason != SkipTruncatedMember {
			t.Fatalf("samples before the cut: %v", skipReasons(got))
		}
		if err == nil || !errors.Is(err, io.ErrUnexpectedEOF) || !strings.Contains(err.Error(), `in member "2.jpg"`) ||
			!strings.Contains(err.Error(), "s.tar") || !strings.Contains(err.Error(), "bytes into the shard") {
			t.Fatalf("error %v; want it to name the shard, the broken member and the offset", err)
		}
	})
	headerOf2 := third - 512
	for name, cut := range map[string]int{"inside a header": headerOf2 + 100, "exactly between members": headerOf2} {
		t.Run(name, func(t *testing.T) {
			got, err := readSamples(OpenTar(bytes.NewReader(shard[:cut]), "s.tar", Limits{}))
			if len(got) != 2 || got[1].Caption != "second" || got[1].SkipReason != "" {
				t.Fatalf("samples before the cut: %v", skipReasons(got))
			}
			if err == nil || !strings.Contains(err.Error(), `after member "1.txt"`) {
				t.Fatalf("error %v", err)
			}
		})
	}
	t.Run("garbage header", func(t *testing.T) {
		bad := append([]byte{}, shard...)
		copy(bad[third-512:], bytes.Repeat([]byte{0xAB}, 512))
		got, err := readSamples(OpenTar(bytes.NewReader(bad), "s.tar", Limits{}))
		if err == nil || len(got) < 2 || got[1].Caption != "second" {
			t.Fatalf("corrupt header: %v, samples %v", err, skipReasons(got))
		}
	})
	t.Run("not a tar at all", func(t *testing.T) {
		got, err := readSamples(OpenTar(strings.NewReader(strings.Repeat("not a tar ", 100)), "s.tar", Limits{}))
		if err == nil || len(got) != 0 || !strings.Contains(err.Error(), "at the start") {
			t.Fatalf("garbage: %v, %d samples", err, len(got))
		}
	})
}

// A member over the limit streams past: the reader never holds it.
func TestTarSkipsHugeMembersWithoutHoldingThem(t *testing.T) {
	const huge = 96 << 20
	pr, pw := io.Pipe()
	go func() {
		tw := tar.NewWriter(pw)
		tw.WriteHeader(&tar.Header{Name: "big.jpg", Mode: 0o644, Size: huge})
		chunk := make([]byte, 1<<20)
		for range huge / len(chunk) {
			tw.Write(chunk)
		}
		tw.WriteHeader(&tar.Header{Name: "big.txt", Mode: 0o644, Size: huge})
		for range huge / len(chunk) {
			tw.Write(chunk)
		}
		tw.WriteHeader(&tar.Header{Name: "ok.jpg", Mode: 0o644, Size: 3})
		tw.Write([]byte("img"))
		tw.WriteHeader(&tar.Header{Name: "ok.txt", Mode: 0o644, Size: 2})
		tw.Write([]byte("ok"))
		pw.CloseWithError(tw.Close())
	}()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	got, err := readSamples(OpenTar(pr, "s.tar", Limits{}))
	runtime.ReadMemStats(&after)
	if err != nil || len(got) != 2 || got[0].SkipReason != SkipMemberTooLarge || got[1].Caption != "ok" {
		t.Fatalf("read: %v, samples %v", err, skipReasons(got))
	}
	// The writer goroutine's 1 MiB chunk and the tar reader's copy buffers are all it takes.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 8<<20 {
		t.Errorf("reading past two %d MiB members allocated %d MiB", huge>>20, alloc>>20)
	}
}
