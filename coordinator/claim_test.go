package coordinator_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"github.com/capfilt/capfilt/coordinator"
	"github.com/capfilt/capfilt/internal/testutil"
	"github.com/capfilt/capfilt/pipeline"
	"github.com/capfilt/capfilt/shards"
)

func refused(t *testing.T, err error, want ...string) {
	t.Helper()
	var inv *coordinator.InvalidError
	if !errors.As(err, &inv) {
		t.Fatalf("err %v; want an InvalidError", err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Fatalf("err %q does not name %q", err, w)
		}
	}
}

func readClaim(t *testing.T, out string) coordinator.Claim {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(out, coordinator.ClaimName))
	if err != nil {
		t.Fatal(err)
	}
	var c coordinator.Claim
	if err := json.Unmarshal(data, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestAnOutputPrefixBelongsToOneRun(t *testing.T) {
	in, out := t.TempDir(), t.TempDir()
	touch(t, filepath.Join(in, "a", "00000.tar"), filepath.Join(in, "b", "00000.tar"))
	q, c := setup(t)
	ctx := context.Background()
	first := runSettings(t, "first", []string{filepath.Join(in, "a", "*.tar")}, out, "/m")
	if _, err := c.Submit(ctx, first); err != nil {
		t.Fatal(err)
	}
	if cl := readClaim(t, out); cl.Run != "first" || cl.Token == "" || cl.Settings.Shards != 1 {
		t.Fatalf("claim %+v", cl)
	}

	second := runSettings(t, "second", []string{filepath.Join(in, "b", "*.tar")}, out, "/m")
	_, err := c.Submit(ctx, second)
	refused(t, err, out, `run "first"`, "--overwrite")
	if n, _ := q.PendingJobs(ctx, "second"); n != 0 {
		t.Fatalf("%d jobs published for the refused run", n)
	}
	if _, err := q.RunSettings(ctx, "second"); !errors.Is(err, pipeline.ErrNotFound) {
		t.Fatalf("settings recorded for the refused run: %v", err)
	}

	// capfilt run on a fresh embedded server: the same name, other inputs, is another run;
	// the same name and settings resume.
	_, fresh := setup(t)
	again := first
	again.Inputs = second.Inputs
	_, err = fresh.Submit(ctx, again)
	refused(t, err, `earlier run "first" with other inputs`)
	if _, err := fresh.Submit(ctx, first); err != nil {
		t.Fatalf("the same run resuming into its prefix: %v", err)
	}
	// Queue settings do not change what lands in the prefix.
	retuned := first
	retuned.Queue.MaxDeliver = 9
	if _, err := func() (*coordinator.SubmitSummary, error) { _, c := setup(t); return c.Submit(ctx, retuned) }(); err != nil {
		t.Fatalf("the same run with other attempts: %v", err)
	}

	if _, err := c.Submit(ctx, second, coordinator.Overwrite()); err != nil {
		t.Fatalf("--overwrite: %v", err)
	}
	if cl := readClaim(t, out); cl.Run != "second" {
		t.Fatalf("after --overwrite the prefix belongs to %q", cl.Run)
	}
}

// An img2dataset folder as the output: its own 00000.parquet would be replaced by the
// cleaned one.
func TestAnOutputHoldingOtherFilesIsRefused(t *testing.T) {
	_, c := setup(t)
	dir := t.TempDir()
	touch(t, filepath.Join(dir, "00000.tar"), filepath.Join(dir, "00001.tar"))
	for _, name := range []string{"00000.parquet", "00000_stats.json", "00001.parquet", "00001_stats.json"} {
		os.WriteFile(filepath.Join(dir, name), []byte("img2dataset's"), 0o644)
	}
	ctx := context.Background()
	rs := runSettings(t, "onto-input", []string{filepath.Join(dir, "*.tar")}, dir, "/m")
	_, err := c.Submit(ctx, rs)
	refused(t, err, "00000.parquet", "00000.tar", "and 1 more", "capfilt did not write")
	if _, err := os.Stat(filepath.Join(dir, coordinator.ClaimName)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused run claimed the folder: %v", err)
	}
	if data, _ := os.ReadFile(filepath.Join(dir, "00000.parquet")); string(data) != "img2dataset's" {
		t.Fatal("img2dataset's file was touched")
	}
	if _, err := c.Submit(ctx, rs, coordinator.Overwrite()); err != nil {
		t.Fatalf("--overwrite: %v", err)
	}
}

// Two submits of different runs into one S3 prefix at the same moment: the conditional
// PUT lets one claim it. A store that ignores the condition is still caught by the claim
// a later submit finds.
func TestRacingSubmitsIntoOneS3PrefixLeaveOneOwner(t *testing.T) {
	srv := testutil.StartS3(t, "bucket")
	srv.Put(t, "bucket", "in/00000.tar", tarOf(t, map[string]string{"k.jpg": "x", "k.txt": "y"}))
	store := shards.OpenStore(shards.StoreConfig{S3Endpoint: srv.Endpoint, S3Region: srv.Region, S3PathStyle: true,
		S3Credentials: srv.Credentials()})
	q, _ := setup(t)
	c := coordinator.New(q, coordinator.Config{Store: store, Version: "test"})
	ctx := context.Background()
	const racers = 4
	errs := make([]error, racers)
	var wg sync.WaitGroup
	for i := range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rs := runSettings(t, "race-"+string(rune('a'+i)), []string{"s3://bucket/in/*.tar"}, "s3://bucket/out/", "/m")
			_, errs[i] = c.Submit(ctx, rs)
		}()
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		var inv *coordinator.InvalidError
		switch {
		case err == nil:
			won++
		case !errors.As(err, &inv) || !strings.Contains(err.Error(), "s3://bucket/out/"):
			t.Errorf("a loser's error: %v", err)
		}
	}
	if won != 1 {
		t.Fatalf("%d of %d racing runs got the prefix: %v", won, racers, errs)
	}

	srv.Intercept(func(w http.ResponseWriter, r *http.Request) bool {
		r.Header.Del("If-None-Match") // a store that ignores conditional writes
		return false
	})
	_, err := c.Submit(ctx, runSettings(t, "late", []string{"s3://bucket/in/*.tar"}, "s3://bucket/out", "/m"))
	refused(t, err, "belongs to run")
}

func TestSubmitReadsTheFirstShardOfEachInput(t *testing.T) {
	_, c := setup(t)
	dir := t.TempDir()
	good := tarOf(t, map[string]string{"k.jpg": "x", "k.txt": "y"})
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(good)
	zw.Close()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	noImage := write("noimg/00000.parquet", captionsOnlyParquet(t))
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		input string
		want  string // in the refusal; "" when the run is fine
	}{
		{"not a tar", write("text/00000.tar", bytes.Repeat([]byte("not a tar archive\n"), 40)), "not a tar"},
		{"a Parquet file without an image column", noImage, "00000.parquet"},
		{"a gzip'd tar", write("gz/00000.tar.gz", gz.Bytes()), ""},
		{"a .tgz", write("tgz/00000.tgz", gz.Bytes()), ""},
		{"an empty tar", write("empty/00000.tar", nil), ""},
		{"a tar truncated in its first member (done with damage)", write("cut/00000.tar", good[:600]), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs := runSettings(t, "first-shard", []string{tc.input}, filepath.Join(t.TempDir(), "out"), "/m")
			rs.Run = strings.NewReplacer(" ", "-", "'", "", ".", "", "(", "", ")", "").Replace(tc.name)
			_, err := c.Submit(ctx, rs)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			refused(t, err, tc.input, tc.want)
		})
	}
}

// captionsOnlyParquet is a Parquet file with captions and no image column.
func captionsOnlyParquet(t *testing.T) []byte {
	t.Helper()
	schema := arrow.NewSchema([]arrow.Field{{Name: "caption", Type: arrow.BinaryTypes.String}}, nil)
	b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer b.Release()
	b.Field(0).(*array.StringBuilder).AppendValues([]string{"a dog", "a cat"}, nil)
	rec := b.NewRecordBatch()
	defer rec.Release()
	var buf bytes.Buffer
	w, err := pqarrow.NewFileWriter(schema, &buf, nil, pqarrow.DefaultWriterProps())
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(rec); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// The manifest is an output like any other: a store outage when the last shard settles
// holds it up, it is not lost.
func TestTheManifestIsWrittenThroughAStoreOutage(t *testing.T) {
	srv := testutil.StartS3(t, "bucket")
	srv.Put(t, "bucket", "in/00000.tar", tarOf(t, map[string]string{"k.jpg": "x", "k.txt": "y"}))
	store := shards.OpenStore(shards.StoreConfig{S3Endpoint: srv.Endpoint, S3Region: srv.Region, S3PathStyle: true,
		S3Credentials: srv.Credentials(), S3MaxAttempts: 1})
	q, _ := setup(t)
	c := coordinator.New(q, coordinator.Config{Store: store, Version: "test"})
	ctx := context.Background()
	sum, err := c.Submit(ctx, runSettings(t, "m", []string{"s3://bucket/in/*.tar"}, "s3://bucket/out/", "/m"))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range fetch(t, q, 1) {
		d.Ack(ctx)
	}
	st := pipeline.ShardState{Run: "m", Shard: sum.Shards[0], State: pipeline.Done, Attempts: 1}
	if err := q.PutShardState(ctx, st); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	done := make(chan error, 1)
	go func() { done <- c.FinishRun(ctx, "m") }()
	time.Sleep(time.Second)
	select {
	case err := <-done:
		t.Fatalf("FinishRun returned during the outage: %v", err)
	default:
	}
	srv.Restart(t)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("FinishRun did not return after the store came back")
	}
	m, err := coordinator.ReadManifest(ctx, store, mustParse(t, "s3://bucket/out/"))
	if err != nil || !m.Complete || m.Done != 1 {
		t.Fatalf("manifest %+v (%v)", m, err)
	}
}

func mustParse(t *testing.T, s string) shards.URL {
	t.Helper()
	u, err := shards.ParseURL(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
