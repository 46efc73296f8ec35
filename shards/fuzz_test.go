package shards

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
)

// fuzzLimits keep one fuzz input cheap: small members, the page limit they imply.
var fuzzLimits = Limits{MaxMemberBytes: 1 << 20, MaxCaptionBytes: 64, MaxMetadataBytes: 4 << 10}

// checkSampleStream drains r and checks what every sample reader promises: no panic
// (the fuzzer catches it), a bounded number of samples, usable samples that obey the
// limits, and an end that is io.EOF or a real error.
func checkSampleStream(t *testing.T, r SampleReader, inputLen int) {
	for n := 0; ; n++ {
		if n > inputLen+16 {
			t.Fatalf("more than %d samples from %d bytes", n, inputLen)
		}
		s, err := r.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			if again, err2 := r.Next(); err2 == nil || errors.Is(err2, io.EOF) {
				t.Fatalf("after error %v, Next gave %+v, %v; want the error again", err, again.Key, err2)
			}
			return
		}
		if s.SkipReason != "" {
			continue
		}
		switch {
		case len(s.Image) == 0:
			t.Fatalf("usable sample %q has no image", s.Key)
		case int64(len(s.Image)) > fuzzLimits.MaxMemberBytes:
			t.Fatalf("usable sample %q has a %d-byte image over the limit", s.Key, len(s.Image))
		case s.Caption == "" || !utf8.ValidString(s.Caption) || len(s.Caption) > fuzzLimits.MaxCaptionBytes:
			t.Fatalf("usable sample %q has caption %q", s.Key, s.Caption)
		case !safeName(s.Key):
			t.Fatalf("usable sample has unsafe key %q", s.Key)
		case len(s.Captions) == 0 || s.Captions[0] != s.Caption || len(s.Captions) > DefaultMaxCaptions:
			t.Fatalf("usable sample %q has captions %q", s.Key, s.Captions)
		}
	}
}

// checkAllocation fails when reading an input allocated more than a fixed budget plus a
// small multiple of its size: what a file claims (member sizes, page sizes, row counts)
// must not drive allocation past the limits.
func checkAllocation(t *testing.T, inputLen int, read func()) {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	read()
	runtime.ReadMemStats(&after)
	budget := uint64(64<<20 + 64*inputLen)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > budget {
		t.Fatalf("a %d-byte input allocated %d MiB, over the %d MiB budget", inputLen, alloc>>20, budget>>20)
	}
}

func FuzzTarReader(f *testing.F) {
	for _, seed := range tarSeeds(f) {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkAllocation(t, len(data), func() {
			r := OpenTar(bytes.NewReader(data), "fuzz.tar", fuzzLimits)
			defer r.Close()
			checkSampleStream(t, r, len(data))
		})
	})
}

func FuzzParquetReader(f *testing.F) {
	for _, seed := range parquetSeeds(f) {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkAllocation(t, len(data), func() {
			r, err := OpenParquet(bytes.NewReader(data), "fuzz.parquet", ShardOptions{Limits: fuzzLimits})
			if err != nil {
				if !strings.Contains(err.Error(), "fuzz.parquet") {
					t.Fatalf("error does not name the shard: %v", err)
				}
				return
			}
			defer r.Close()
			checkSampleStream(t, r, len(data))
		})
	})
}

func tarSeeds(t testing.TB) [][]byte {
	jpg := string(testJPEG(t, 4, 4))
	good := makeTar(t,
		tarMember{name: "0.jpg", data: jpg}, tarMember{name: "0.txt", data: "a caption"},
		tarMember{name: "0.json", data: `{"url":"u","width":4,"height":4}`},
		tarMember{name: "d/1.x.png", data: "\x89PNG\r\n\x1a\n"}, tarMember{name: "d/1.x.txt", data: "caf\xc3\xa9"},
	)
	odd := makeTar(t,
		tarMember{name: "../up.jpg", data: "x"}, tarMember{name: "../up.txt", data: "y"},
		tarMember{name: "l.jpg", typeflag: '2'}, tarMember{name: "l.txt", data: "z"},
		tarMember{name: "e.webp", data: "RIFF0000WEBP"}, tarMember{name: "e.txt", data: strings.Repeat("é", 40)},
		tarMember{name: "j.jpg", data: "j"}, tarMember{name: "j.txt", data: "j"}, tarMember{name: "j.json", data: "[]"},
		tarMember{name: strings.Repeat("long/", 30) + "k.jpg", data: "k"}, // a PAX path record
	)
	dup := makeTar(t, tarMember{name: "a.jpg", data: jpg}, tarMember{name: "a.txt", data: "a"},
		tarMember{name: "b.jpg", data: jpg}, tarMember{name: "b.txt", data: "b"}, tarMember{name: "a.txt", data: "again"})
	return [][]byte{good, good[:len(good)-1500], odd, {}, gzipBytes(t, good), gzipBytes(t, good)[:300], dup}
}

func parquetSeeds(t testing.TB) [][]byte {
	jpg := testJPEG(t, 4, 4)
	img2ds := img2datasetParquet(t, 2, []img2datasetRow{
		{"a", jpg, ptr("first"), "u", 4, 4}, {"b", nil, ptr("no image"), "u", 0, 0}, {"c", jpg, nil, "", 4, 4},
	})
	coco := cocoParquet(t, jpg)
	return [][]byte{img2ds, img2ds[:len(img2ds)/2], []byte("PAR1\x00\x00\x00\x00PAR1"), coco}
}

// cocoParquet has a list<string> caption column, an image_id key and a null list.
func cocoParquet(t testing.TB, jpg []byte) []byte {
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "image", Type: arrow.BinaryTypes.Binary},
		{Name: "caption", Type: arrow.ListOf(arrow.BinaryTypes.String), Nullable: true},
		{Name: "image_id", Type: arrow.PrimitiveTypes.Int64},
	}, nil)
	return writeTestParquet(t, schema, 2, func(b *array.RecordBuilder) {
		for i, caps := range [][]string{{"a dog", " ", "a brown dog"}, nil, {"x"}} {
			b.Field(0).(*array.BinaryBuilder).Append(jpg)
			lb := b.Field(1).(*array.ListBuilder)
			if caps == nil {
				lb.AppendNull()
			} else {
				lb.Append(true)
				for _, c := range caps {
					lb.ValueBuilder().(*array.StringBuilder).Append(c)
				}
			}
			b.Field(2).(*array.Int64Builder).Append(int64(i))
		}
	})
}

// The committed corpus under testdata/fuzz is what these seeds were when it was written;
// regenerate it with: go test ./shards -run TestWriteFuzzSeedCorpus -write-fuzz-seeds
var writeFuzzSeeds = flag.Bool("write-fuzz-seeds", false, "rewrite shards/testdata/fuzz seed corpora")

func TestWriteFuzzSeedCorpus(t *testing.T) {
	if !*writeFuzzSeeds {
		t.Skip("only with -write-fuzz-seeds")
	}
	for name, seeds := range map[string][][]byte{"FuzzTarReader": tarSeeds(t), "FuzzParquetReader": parquetSeeds(t)} {
		dir := filepath.Join("testdata", "fuzz", name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i, seed := range seeds {
			body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", seed)
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}
