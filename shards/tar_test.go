package shards

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
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
		{"json not UTF-8", []tarMember{{name: "k.jpg", data: jpg}, {name: "k.txt", data: "c"}, {name: "k.json", data: "{\"a\":\"caf\xe9\"}"}}, Limits{}, SkipBadMetadata},
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

// A key that comes back after another key is not merged into its first sample, nor
// silently taken for a new one: it is counted, skipped as a duplicate.
func TestTarKeyThatReturnsLaterIsCountedAsADuplicate(t *testing.T) {
	shard := makeTar(t,
		tarMember{name: "a.jpg", data: "1"}, tarMember{name: "a.txt", data: "a"},
		tarMember{name: "b.jpg", data: "2"}, tarMember{name: "b.txt", data: "b"},
		tarMember{name: "a.jpg", data: "3"}, tarMember{name: "a.txt", data: "late caption"},
		tarMember{name: "c.jpg", data: "4"}, tarMember{name: "c.txt", data: "c"},
	)
	got, err := readSamples(OpenTar(bytes.NewReader(shard), "s.tar", Limits{}))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"a:", "b:", "a:" + SkipDuplicateKey, "c:"}; strings.Join(skipReasons(got), " ") != strings.Join(want, " ") {
		t.Fatalf("samples %v, want %v", skipReasons(got), want)
	}
	if got[0].Caption != "a" || !bytes.Equal(got[0].Image, []byte("1")) {
		t.Errorf("the first sample of the key changed: %q %q", got[0].Caption, got[0].Image)
	}
}

// tarCut is a three-sample shard and the offsets a test cuts it at.
type tarCut struct {
	shard     []byte
	jpg       string
	thirdData int // where member 2.jpg's data starts
}

func threeSampleTar(t *testing.T) tarCut {
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
	return tarCut{shard: shard, jpg: jpg, thirdData: third}
}

// damageOf drains a reader that must end in damage and returns what it read and the damage.
func damageOf(t *testing.T, r SampleReader) ([]Sample, *DamageError) {
	t.Helper()
	got, err := readSamples(r)
	var d *DamageError
	if !errors.As(err, &d) {
		t.Fatalf("ended with %v (samples %v); want a *DamageError", err, skipReasons(got))
	}
	if again, err2 := r.Next(); !errors.As(err2, new(*DamageError)) {
		t.Fatalf("after the damage Next gave %q, %v", again.Key, err2)
	}
	return got, d
}

func TestTruncatedTarKeepsTheSamplesBeforeTheDamageAndSaysWhere(t *testing.T) {
	c := threeSampleTar(t)
	headerOf2 := c.thirdData - 512
	cases := []struct {
		name    string
		cut     int
		samples []string
		damage  ShardDamage
	}{
		{"inside a member", c.thirdData + 100, []string{"0:", "1:", "2:" + SkipTruncatedMember},
			ShardDamage{TruncatedAt: int64(c.thirdData + 100), Member: "2.jpg", After: "1.txt", Reason: DamageTruncated}},
		{"inside a header", headerOf2 + 100, []string{"0:", "1:"},
			ShardDamage{TruncatedAt: int64(headerOf2 + 100), After: "1.txt", Reason: DamageTruncated}},
		{"exactly between members", headerOf2, []string{"0:", "1:"},
			ShardDamage{TruncatedAt: int64(headerOf2), After: "1.txt", Reason: DamageTruncated}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, d := damageOf(t, OpenTar(bytes.NewReader(c.shard[:tc.cut]), "s.tar", Limits{}))
			if strings.Join(skipReasons(got), " ") != strings.Join(tc.samples, " ") || got[1].Caption != "second" {
				t.Fatalf("samples before the cut: %v, want %v", skipReasons(got), tc.samples)
			}
			if d.Detail == "" || !errors.Is(d, io.ErrUnexpectedEOF) && tc.damage.Member != "" {
				t.Errorf("damage detail %q, error chain %v", d.Detail, d.Err)
			}
			d.Detail = ""
			if d.ShardDamage != tc.damage {
				t.Errorf("damage %+v, want %+v", d.ShardDamage, tc.damage)
			}
			if msg := d.Error(); !strings.Contains(msg, "s.tar") || !strings.Contains(msg, "bytes into the shard") {
				t.Errorf("error %q does not name the shard and the offset", msg)
			}
		})
	}
}

func TestDamagedTarHeadersEndTheShardWithDamage(t *testing.T) {
	c := threeSampleTar(t)
	t.Run("garbage header", func(t *testing.T) {
		bad := append([]byte{}, c.shard...)
		copy(bad[c.thirdData-512:], bytes.Repeat([]byte{0xAB}, 512))
		got, d := damageOf(t, OpenTar(bytes.NewReader(bad), "s.tar", Limits{}))
		if len(got) != 2 || got[1].Caption != "second" || d.Reason != DamageBadHeader || d.After != "1.txt" {
			t.Fatalf("samples %v, damage %+v", skipReasons(got), d.ShardDamage)
		}
	})
	t.Run("NUL in a member name", func(t *testing.T) {
		// A PAX path record may not hold NUL; the writer refuses to make one, so the name
		// is written with \x01 and patched.
		good := makeTar(t, tarMember{name: "0.jpg", data: c.jpg}, tarMember{name: "0.txt", data: "first"})
		bad := makeTar(t, tarMember{name: "bad\x01é.jpg", data: c.jpg}, tarMember{name: "z.txt", data: "after"})
		bad = bytes.Replace(bad, []byte("bad\x01é"), []byte("bad\x00é"), 1)
		shard := append(good[:len(good)-1024], bad...) // the first archive without its end marker
		got, d := damageOf(t, OpenTar(bytes.NewReader(shard), "s.tar", Limits{}))
		if len(got) != 1 || got[0].Caption != "first" || d.Reason != DamageBadHeader || d.After != "0.txt" ||
			d.TruncatedAt <= int64(len(good)-1024) {
			t.Fatalf("samples %v, damage %+v", skipReasons(got), d.ShardDamage)
		}
	})
	t.Run("a 2 GiB member that is not there", func(t *testing.T) {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, m := range []tarMember{{name: "0.jpg", data: c.jpg}, {name: "0.txt", data: "first"}} {
			tw.WriteHeader(&tar.Header{Name: m.name, Mode: 0o644, Size: int64(len(m.data))})
			tw.Write([]byte(m.data))
		}
		tw.WriteHeader(&tar.Header{Name: "1.jpg", Mode: 0o644, Size: 2 << 30})
		tw.Write([]byte("only this"))
		tw.Flush() // the writer would pad the member out to 2 GiB; the shard stops here
		got, d := damageOf(t, OpenTar(bytes.NewReader(buf.Bytes()), "s.tar", Limits{}))
		want := ShardDamage{TruncatedAt: int64(buf.Len()), Member: "1.jpg", After: "0.txt", Reason: DamageTruncated}
		d.Detail = ""
		if strings.Join(skipReasons(got), " ") != "0: 1:"+SkipTruncatedMember || d.ShardDamage != want {
			t.Fatalf("samples %v, damage %+v, want %+v", skipReasons(got), d.ShardDamage, want)
		}
	})
}

func TestTarThatIsNotATarIsAnErrorNotDamage(t *testing.T) {
	got, err := readSamples(OpenTar(strings.NewReader(strings.Repeat("not a tar ", 100)), "s.tar", Limits{}))
	if err == nil || len(got) != 0 || !strings.Contains(err.Error(), "not a tar archive") || errors.As(err, new(*DamageError)) {
		t.Fatalf("garbage: %v, %d samples", err, len(got))
	}
}

func TestZeroByteTarIsAnEmptyShard(t *testing.T) {
	for name, data := range map[string][]byte{"zero bytes": nil, "gzip of nothing": gzipBytes(t, nil)} {
		got, err := readSamples(OpenTar(bytes.NewReader(data), "s.tar", Limits{}))
		if err != nil || len(got) != 0 {
			t.Errorf("%s: %d samples, %v; want an empty shard", name, len(got), err)
		}
	}
}

func gzipBytes(t testing.TB, data []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// A gzip'd tar is found by its bytes, as webdataset does: whatever the name.
func TestGzippedTarIsReadTransparently(t *testing.T) {
	plain, images := webShard(t, 5, 3000)
	zipped := gzipBytes(t, plain)
	for _, name := range []string{"s.tar.gz", "s.tgz", "s.tar"} {
		got, err := readSamples(OpenTar(bytes.NewReader(zipped), name, Limits{}))
		if err != nil || len(got) != 5 {
			t.Fatalf("%s: %d samples, %v", name, len(got), err)
		}
		for i, s := range got {
			if !bytes.Equal(s.Image, images[i]) || s.Caption != fmt.Sprintf("caption %d", i) {
				t.Fatalf("%s: sample %d differs", name, i)
			}
		}
	}
	t.Run("cut", func(t *testing.T) {
		got, d := damageOf(t, OpenTar(bytes.NewReader(zipped[:len(zipped)*3/5]), "s.tar.gz", Limits{}))
		if len(got) < 2 || d.Reason != DamageTruncated {
			t.Fatalf("samples %v, damage %+v", skipReasons(got), d.ShardDamage)
		}
	})
	t.Run("corrupt deflate data", func(t *testing.T) {
		bad := append([]byte{}, zipped...)
		for i := len(bad) * 3 / 5; i < len(bad)*3/5+64; i++ {
			bad[i] ^= 0x5A
		}
		got, d := damageOf(t, OpenTar(bytes.NewReader(bad), "s.tar.gz", Limits{}))
		if d.Reason != DamageBadGzip && d.Reason != DamageBadHeader && d.Reason != DamageTruncated {
			t.Fatalf("samples %v, damage %+v", skipReasons(got), d.ShardDamage)
		}
	})
}

// A read that fails at the source (here: a store that cuts the stream) is an outage, not
// damage: the error wraps the store's error, and does not say "truncated".
func TestFailedReadIsNotReportedAsDamage(t *testing.T) {
	c := threeSampleTar(t)
	cause := fmt.Errorf("read s3://b/s.tar at byte 9: %w: connection reset", ErrInterrupted)
	for _, cut := range []int{c.thirdData - 512, c.thirdData + 100, 1} {
		r := OpenTar(io.MultiReader(bytes.NewReader(c.shard[:cut]), failingReader{cause}), "s.tar", Limits{})
		_, err := readSamples(r)
		if !errors.Is(err, ErrInterrupted) || errors.As(err, new(*DamageError)) || strings.Contains(err.Error(), "truncated") {
			t.Errorf("cut at %d: %v; want the store's error, not damage", cut, err)
		}
	}
}

type failingReader struct{ err error }

func (f failingReader) Read([]byte) (int, error) { return 0, f.err }

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
