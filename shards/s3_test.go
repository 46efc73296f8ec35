package shards

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/capfilt/capfilt/internal/testutil"
)

func newTestS3(t *testing.T, buckets ...string) (*testutil.S3Server, Store) {
	srv := testutil.StartS3(t, buckets...)
	cfg := testS3Config(srv)
	cfg.S3PartSize = minS3PartSize
	cfg.S3UploadConcurrency = 2
	return srv, OpenStore(cfg)
}

func TestS3LargeObjectsUploadInPartsAndPublishOnClose(t *testing.T) {
	srv, store := newTestS3(t, "bucket")
	var parts, puts atomic.Int32
	srv.Intercept(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodPut && r.URL.Query().Has("partNumber") {
			parts.Add(1)
		} else if r.Method == http.MethodPut {
			puts.Add(1)
		}
		return false
	})
	ctx := context.Background()
	data := randomBytes(12<<20+5, 7) // two full 5 MiB parts and a short last one
	u := mustURL(t, "s3://bucket/out/big.parquet")
	w, err := store.Create(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	for chunk := data; len(chunk) > 0; { // odd-sized writes, as an encoder makes
		n := min(len(chunk), 777_777)
		if _, err := w.Write(chunk[:n]); err != nil {
			t.Fatalf("Write: %v", err)
		}
		chunk = chunk[n:]
	}
	if _, ok := srv.Get(t, "bucket", "out/big.parquet"); ok {
		t.Fatal("object visible before Close")
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	got, ok := srv.Get(t, "bucket", "out/big.parquet")
	if !ok || !bytes.Equal(got, data) {
		t.Fatalf("published object: %d bytes (exists %v), want the %d written", len(got), ok, len(data))
	}
	if parts.Load() != 3 || puts.Load() != 0 {
		t.Errorf("%d UploadPart and %d PutObject requests, want 3 and 0", parts.Load(), puts.Load())
	}
	if ups := srv.MultipartUploads(t, "bucket"); len(ups) != 0 {
		t.Errorf("multipart uploads left open: %v", ups)
	}

	small := mustURL(t, "s3://bucket/out/small.stats.json")
	put(t, store, small, []byte(`{"samples_read":3}`))
	if puts.Load() != 1 {
		t.Errorf("a small object took %d PutObject requests, want 1", puts.Load())
	}
}

func TestS3AbortedMultipartUploadLeavesNothing(t *testing.T) {
	srv, store := newTestS3(t, "bucket")
	ctx := context.Background()
	put(t, store, mustURL(t, "s3://bucket/out/x.parquet"), []byte("previous run"))

	w, err := store.Create(ctx, mustURL(t, "s3://bucket/out/x.parquet"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(randomBytes(11<<20, 3)); err != nil {
		t.Fatal(err)
	}
	if ups := srv.MultipartUploads(t, "bucket"); len(ups) != 1 {
		t.Fatalf("expected the upload to be under way, open uploads: %v", ups)
	}
	if err := w.Abort(); err != nil {
		t.Fatalf("Abort: %v", err)
	}
	if ups := srv.MultipartUploads(t, "bucket"); len(ups) != 0 {
		t.Fatalf("Abort left multipart uploads: %v", ups)
	}
	if got, _ := srv.Get(t, "bucket", "out/x.parquet"); string(got) != "previous run" {
		t.Fatalf("Abort changed the object to %d bytes", len(got))
	}

	// Cancelling the context mid-write is the usual reason to abort; the abort must still reach S3.
	cctx, cancel := context.WithCancel(ctx)
	w, _ = store.Create(cctx, mustURL(t, "s3://bucket/out/y.parquet"))
	w.Write(randomBytes(6<<20, 4))
	cancel()
	w.Write(randomBytes(6<<20, 5))
	if err := w.Close(); err == nil {
		t.Fatal("Close after cancel published")
	}
	w.Abort()
	if ups := srv.MultipartUploads(t, "bucket"); len(ups) != 0 {
		t.Fatalf("cancelled upload left multipart uploads: %v", ups)
	}
	if _, ok := srv.Get(t, "bucket", "out/y.parquet"); ok {
		t.Fatal("cancelled upload was published")
	}
}

func TestS3ErrorsSayWhatIsWrongAndWhere(t *testing.T) {
	srv, store := newTestS3(t, "bucket")
	ctx := context.Background()

	noBucket := mustURL(t, "s3://no-such-bucket/x.tar")
	for op, err := range map[string]error{
		"open": func() error { _, err := store.Open(ctx, noBucket); return err }(),
		"stat": func() error { _, err := store.Stat(ctx, noBucket); return err }(),
		"list": func() error { _, err := store.List(ctx, noBucket); return err }(),
	} {
		if !errors.Is(err, ErrBucketNotFound) || !strings.Contains(err.Error(), "no-such-bucket") {
			t.Errorf("%s in a missing bucket: %v, want ErrBucketNotFound naming it", op, err)
		}
	}

	srv.Put(t, "bucket", "secret.tar", []byte("x"))
	srv.Intercept(func(w http.ResponseWriter, r *http.Request) bool {
		testutil.WriteS3Error(w, r, http.StatusForbidden, "AccessDenied", "Access Denied")
		return true
	})
	u := mustURL(t, "s3://bucket/secret.tar")
	_, openErr := store.Open(ctx, u)
	_, statErr := store.Stat(ctx, u) // a HEAD: the 403 has no body
	for _, err := range []error{openErr, statErr} {
		if !errors.Is(err, ErrAccessDenied) || !strings.Contains(err.Error(), u.String()) {
			t.Errorf("denied: %v, want ErrAccessDenied naming %s", err, u)
		}
		if strings.Contains(err.Error(), srv.SecretAccessKey) || strings.Contains(err.Error(), srv.AccessKeyID) {
			t.Errorf("error leaks credentials: %v", err)
		}
	}
}

func TestS3RetriesServerErrorsWithBackoff(t *testing.T) {
	srv, store := newTestS3(t, "bucket")
	srv.Put(t, "bucket", "flaky.tar", []byte("payload"))
	var failures atomic.Int32
	srv.Intercept(func(w http.ResponseWriter, r *http.Request) bool {
		if failures.Add(1) <= 3 {
			testutil.WriteS3Error(w, r, http.StatusServiceUnavailable, "InternalError", "try again")
			return true
		}
		return false
	})
	if got := readAll(t, store, mustURL(t, "s3://bucket/flaky.tar")); string(got) != "payload" {
		t.Fatalf("read %q", got)
	}
	if failures.Load() != 4 {
		t.Errorf("%d requests, want 3 failed + 1 good", failures.Load())
	}

	failures.Store(-100) // every request fails from now: give up after S3MaxAttempts
	srv.Intercept(func(w http.ResponseWriter, r *http.Request) bool {
		failures.Add(1)
		testutil.WriteS3Error(w, r, http.StatusInternalServerError, "InternalError", "down")
		return true
	})
	if _, err := store.Open(context.Background(), mustURL(t, "s3://bucket/flaky.tar")); err == nil {
		t.Fatal("Open succeeded against a server that always fails")
	}
	if n := failures.Load() + 100; n != defaultS3MaxAttempts {
		t.Errorf("gave up after %d requests, want %d", n, defaultS3MaxAttempts)
	}
}

// A response body that breaks off is not retried by the SDK; the reader resumes it.
func TestS3StreamingReadResumesABrokenBody(t *testing.T) {
	srv, store := newTestS3(t, "bucket")
	data := randomBytes(4<<20, 11)
	srv.Put(t, "bucket", "shard.tar", data)
	var mu sync.Mutex
	var ranges []string
	cut := true
	srv.Intercept(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodGet {
			return false
		}
		mu.Lock()
		defer mu.Unlock()
		ranges = append(ranges, r.Header.Get("Range"))
		if !cut {
			return false
		}
		cut = false
		w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		w.Header().Set("ETag", `"etag"`)
		w.WriteHeader(http.StatusOK)
		w.Write(data[:1<<20])
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // drop the connection mid-body
	})
	got := readAll(t, store, mustURL(t, "s3://bucket/shard.tar"))
	if !bytes.Equal(got, data) {
		t.Fatalf("resumed read gave %d bytes, not the %d stored", len(got), len(data))
	}
	if len(ranges) != 2 || ranges[0] != "" || !strings.HasPrefix(ranges[1], "bytes=") || ranges[1] == "bytes=0-" {
		t.Errorf("requests' Range headers %q, want a whole GET then a resume past byte 0", ranges)
	}
}

// A body that keeps breaking off is an outage: the tar reader says the read failed, with
// ErrInterrupted in the chain, and never that the shard is truncated.
func TestS3BodyCutForGoodIsAnInterruptedReadNotADamagedShard(t *testing.T) {
	srv, store := newTestS3(t, "bucket")
	data, _ := webShard(t, 20, 50_000)
	srv.Put(t, "bucket", "shard.tar", data)
	srv.Intercept(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodGet {
			return false
		}
		from := 0
		fmt.Sscanf(r.Header.Get("Range"), "bytes=%d-", &from)
		w.Header().Set("Content-Length", fmt.Sprint(len(data)-from))
		w.Header().Set("ETag", `"etag"`)
		status := http.StatusOK
		if from > 0 {
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", from, len(data)-1, len(data)))
			status = http.StatusPartialContent
		}
		w.WriteHeader(status)
		w.Write(data[from : from+60_000]) // every answer breaks off after 60 kB
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	})
	r, err := OpenShard(context.Background(), store, mustURL(t, "s3://bucket/shard.tar"), ShardOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got, err := readSamples(r)
	if !errors.Is(err, ErrInterrupted) || errors.As(err, new(*DamageError)) || strings.Contains(err.Error(), "truncated") {
		t.Fatalf("after %d samples: %v; want an interrupted read, not damage", len(got), err)
	}
	if !strings.Contains(err.Error(), "s3://bucket/shard.tar") {
		t.Errorf("error %q does not name the object", err)
	}
}

func TestS3OpenAtReadsWithRangedGets(t *testing.T) {
	srv, store := newTestS3(t, "bucket")
	data := randomBytes(1<<20, 5)
	srv.Put(t, "bucket", "x.parquet", data)
	var ranged atomic.Int32
	srv.Intercept(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodGet && r.Header.Get("Range") != "" {
			ranged.Add(1)
		}
		return false
	})
	ra, err := store.OpenAt(context.Background(), mustURL(t, "s3://bucket/x.parquet"))
	if err != nil {
		t.Fatal(err)
	}
	defer ra.Close()
	buf := make([]byte, 100)
	for _, off := range []int64{0, 500_000, int64(len(data)) - 100} {
		if _, err := ra.ReadAt(buf, off); err != nil || !bytes.Equal(buf, data[off:off+100]) {
			t.Fatalf("ReadAt(%d): %v", off, err)
		}
	}
	if _, err := ra.ReadAt(buf, int64(len(data))); err != io.EOF {
		t.Errorf("ReadAt at the end: %v, want io.EOF", err)
	}
	if ranged.Load() != 3 {
		t.Errorf("%d ranged GETs, want 3 (one per ReadAt inside the object)", ranged.Load())
	}
}

func TestS3ListFollowsPagesAndExpandsPatterns(t *testing.T) {
	srv, store := newTestS3(t, "bucket")
	for i := range 1005 { // more than one 1000-key page
		srv.Put(t, "bucket", fmt.Sprintf("in/shard-%05d.tar", i), []byte("x"))
	}
	srv.Put(t, "bucket", "in/shard-00000.parquet", []byte("x"))
	ctx := context.Background()
	infos, err := store.List(ctx, mustURL(t, "s3://bucket/in/"))
	if err != nil || len(infos) != 1006 {
		t.Fatalf("List: %d objects, %v; want 1006", len(infos), err)
	}
	tars, err := Expand(ctx, store, "s3://bucket/in/*.tar")
	if err != nil || len(tars) != 1005 || tars[1004].String() != "s3://bucket/in/shard-01004.tar" {
		t.Fatalf("glob: %d URLs, %v", len(tars), err)
	}
	ranged, err := Expand(ctx, store, "s3://bucket/in/shard-{00010..00012}.tar")
	if err != nil || len(ranged) != 3 || ranged[2].String() != "s3://bucket/in/shard-00012.tar" {
		t.Fatalf("brace range: %v, %v", ranged, err)
	}
}

func TestS3EndpointMustBeAURL(t *testing.T) {
	store := OpenStore(StoreConfig{S3Endpoint: "minio:9000"})
	_, err := store.Stat(context.Background(), mustURL(t, "s3://bucket/x.tar"))
	if err == nil || !strings.Contains(err.Error(), `s3 endpoint "minio:9000"`) {
		t.Fatalf("Stat through a store with a bad endpoint: %v", err)
	}
	if _, err := OpenStore(StoreConfig{}).Stat(context.Background(), URL{Scheme: "gs", Bucket: "b", Path: "k"}); err == nil {
		t.Fatal("a gs:// URL found a store")
	}
}

// A writer whose process died (no Close, no Abort) leaves an open multipart upload;
// DiscardUnpublished aborts it without touching the published object or other keys.
func TestS3DiscardUnpublishedAbortsDeadUploads(t *testing.T) {
	srv, store := newTestS3(t, "bucket")
	ctx := context.Background()
	u := mustURL(t, "s3://bucket/out/x.parquet")
	put(t, store, u, []byte("published"))
	dead, err := store.Create(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	dead.Write(randomBytes(11<<20, 6)) // a part is uploaded; the writer is then abandoned
	other, _ := store.Create(ctx, mustURL(t, "s3://bucket/out/x.parquet.stats"))
	other.Write(randomBytes(11<<20, 7))
	if ups := srv.MultipartUploads(t, "bucket"); len(ups) != 2 {
		t.Fatalf("open uploads %v, want 2", ups)
	}
	if err := store.DiscardUnpublished(ctx, u); err != nil {
		t.Fatal(err)
	}
	if ups := srv.MultipartUploads(t, "bucket"); len(ups) != 1 {
		t.Fatalf("after discarding x.parquet's: open uploads %v, want only the other key's", ups)
	}
	if got, _ := srv.Get(t, "bucket", "out/x.parquet"); string(got) != "published" {
		t.Fatalf("the published object changed to %d bytes", len(got))
	}
	other.Abort()
}
