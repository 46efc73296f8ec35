package shards

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseURLAcceptsTheThreeSyntaxes(t *testing.T) {
	cases := []struct {
		in   string
		want URL
		str  string
	}{
		{"s3://bucket/prefix/shard-00001.tar", URL{SchemeS3, "bucket", "prefix/shard-00001.tar"}, "s3://bucket/prefix/shard-00001.tar"},
		{"S3://bucket/out/", URL{SchemeS3, "bucket", "out/"}, "s3://bucket/out/"},
		{"s3://bucket", URL{SchemeS3, "bucket", ""}, "s3://bucket/"},
		{"s3://bucket/a//b", URL{SchemeS3, "bucket", "a//b"}, "s3://bucket/a//b"}, // keys are literal
		{"file:///data/shards/x.tar", URL{SchemeFile, "", "/data/shards/x.tar"}, "/data/shards/x.tar"},
		{"file://localhost/data/x.tar", URL{SchemeFile, "", "/data/x.tar"}, "/data/x.tar"},
		{"file:///data/out/", URL{SchemeFile, "", "/data/out/"}, "/data/out/"},
		{"/data/../data/./x.tar", URL{SchemeFile, "", "/data/x.tar"}, "/data/x.tar"},
		{"shards/x-{00..09}.tar", URL{SchemeFile, "", "shards/x-{00..09}.tar"}, "shards/x-{00..09}.tar"},
		{"./out/", URL{SchemeFile, "", "out/"}, "out/"},
		{"weird:name", URL{SchemeFile, "", "weird:name"}, "weird:name"},
	}
	for _, c := range cases {
		got, err := ParseURL(c.in)
		if err != nil {
			t.Errorf("ParseURL(%q): %v", c.in, err)
			continue
		}
		if got != c.want {
			t.Errorf("ParseURL(%q) = %#v, want %#v", c.in, got, c.want)
		}
		if got.String() != c.str {
			t.Errorf("ParseURL(%q).String() = %q, want %q", c.in, got.String(), c.str)
		}
		back, err := ParseURL(got.String())
		if err != nil || back != got {
			t.Errorf("String of %q does not parse back: %#v, %v", c.in, back, err)
		}
	}
}

func TestParseURLRejectsWhatItCannotServe(t *testing.T) {
	for _, in := range []string{
		"",
		"s3://",
		"s3:///key",
		"s3:bucket/key",
		"gs://bucket/key",
		"http://host/x.tar",
		"file://otherhost/x.tar",
		"a\x00b",
	} {
		if u, err := ParseURL(in); err == nil {
			t.Errorf("ParseURL(%q) = %#v, want an error", in, u)
		}
	}
}

func TestURLNamesOutputsAfterTheShardStem(t *testing.T) {
	out, _ := ParseURL("s3://b/run1/out/")
	shard, _ := ParseURL("s3://b/in/shard-00042.tar")
	if got := CleanedURL(out, shard).String(); got != "s3://b/run1/out/shard-00042.parquet" {
		t.Errorf("CleanedURL = %s", got)
	}
	if got := StatsURL(out, shard).String(); got != "s3://b/run1/out/shard-00042.stats.json" {
		t.Errorf("StatsURL = %s", got)
	}
	local, _ := ParseURL("/tmp/out")
	if got := CleanedURL(local, shard).String(); got != "/tmp/out/shard-00042.parquet" {
		t.Errorf("local CleanedURL = %s", got)
	}
	root, _ := ParseURL("s3://b")
	if got := root.Join("x", "y.tar").String(); got != "s3://b/x/y.tar" {
		t.Errorf("Join at the bucket root = %s", got)
	}
	if shard.Ext() != ".tar" || shard.Base() != "shard-00042.tar" {
		t.Errorf("Ext %q Base %q", shard.Ext(), shard.Base())
	}
}

func TestGzippedTarShardsAreNamedWithoutBothExtensions(t *testing.T) {
	for name, want := range map[string][2]string{
		"s3://b/in/shard-00042.tar.gz": {"shard-00042", FormatTar}, "/in/SHARD.TAR.GZ": {"SHARD", FormatTar},
		"/in/shard-00042.tgz": {"shard-00042", FormatTar}, "/in/a.b.tar": {"a.b", FormatTar},
		"/in/train-00001.parquet": {"train-00001", FormatParquet}, "/in/notes.gz": {"notes", ""},
	} {
		u, err := ParseURL(name)
		if err != nil {
			t.Fatal(err)
		}
		if u.Stem() != want[0] || ShardFormat(u) != want[1] {
			t.Errorf("%s: stem %q format %q, want %q %q", name, u.Stem(), ShardFormat(u), want[0], want[1])
		}
	}
}

func TestBraceRangesExpandZeroPaddedAsWritten(t *testing.T) {
	cases := []struct {
		in   string
		want []string
	}{
		{"s-{00000..00002}.tar", []string{"s-00000.tar", "s-00001.tar", "s-00002.tar"}},
		{"s-{8..11}.tar", []string{"s-8.tar", "s-9.tar", "s-10.tar", "s-11.tar"}},
		{"s-{08..11}.tar", []string{"s-08.tar", "s-09.tar", "s-10.tar", "s-11.tar"}},
		{"s-{0..2}", []string{"s-0", "s-1", "s-2"}},
		{"{a,b}/{0..1}.tar", []string{"a/0.tar", "a/1.tar", "b/0.tar", "b/1.tar"}},
		{"plain.tar", []string{"plain.tar"}},
	}
	for _, c := range cases {
		got, err := expandBraces(c.in)
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("expandBraces(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
	got, err := expandBraces("x-{00000..09999}.tar")
	if err != nil || len(got) != 10000 || got[0] != "x-00000.tar" || got[9999] != "x-09999.tar" {
		t.Errorf("the issue's example expands to %d names (%v), first/last wrong or error", len(got), err)
	}
}

func TestBadBracePatternsAreErrors(t *testing.T) {
	for _, in := range []string{
		"x-{1..}.tar", "x-{..3}", "x-{3..1}", "x-{a..b}", "x-{1..2", "x-1..2}", "x-{}", "x-{only}",
		"x-{-1..2}", "x-{{1..2}}", "x-{0..99999999999}", "{0..999}{0..999}{0..999}",
	} {
		if got, err := expandBraces(in); err == nil {
			t.Errorf("expandBraces(%q) = %d names, want an error", in, len(got))
		}
	}
}

func TestExpandGlobsByListingLocalFolders(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"a/s-0.tar", "a/s-1.tar", "a/s-1.parquet", "a/sub/s-2.tar", "b/s-3.tar"} {
		writeFile(t, filepath.Join(dir, name), "x")
	}
	ctx := context.Background()
	store := OpenStore(StoreConfig{})

	got, err := Expand(ctx, store, dir+"/a/*.tar")
	wantPaths(t, got, err, dir+"/a/s-0.tar", dir+"/a/s-1.tar")

	got, err = Expand(ctx, store, "file://"+dir+"/*/s-?.tar")
	wantPaths(t, got, err, dir+"/a/s-0.tar", dir+"/a/s-1.tar", dir+"/b/s-3.tar")

	got, err = Expand(ctx, store, dir+"/{a,b}/s-{1..3}.tar")
	wantPaths(t, got, err, dir+"/a/s-1.tar", dir+"/a/s-2.tar", dir+"/a/s-3.tar",
		dir+"/b/s-1.tar", dir+"/b/s-2.tar", dir+"/b/s-3.tar") // braces do not check existence

	got, err = Expand(ctx, store, dir+"/{a,a}/s-[01].tar")
	wantPaths(t, got, err, dir+"/a/s-0.tar", dir+"/a/s-1.tar") // duplicates dropped

	if _, err := Expand(ctx, store, dir+"/c/*.tar"); err == nil || !strings.Contains(err.Error(), "no objects match") {
		t.Errorf("a glob matching nothing: err = %v", err)
	}
	if _, err := Expand(ctx, store, dir+"/a/[.tar"); err == nil {
		t.Error("a malformed glob expanded without error")
	}

	t.Chdir(dir)
	got, err = Expand(ctx, store, "a/*.parquet")
	wantPaths(t, got, err, "a/s-1.parquet")
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func wantPaths(t *testing.T, got []URL, err error, want ...string) {
	t.Helper()
	if err != nil {
		t.Fatalf("Expand: %v", err)
	}
	var paths []string
	for _, u := range got {
		paths = append(paths, u.String())
	}
	if !reflect.DeepEqual(paths, want) {
		t.Fatalf("Expand gave\n %v\nwant\n %v", paths, want)
	}
}
