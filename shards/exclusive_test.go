package shards

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/capfilt/capfilt/internal/testutil"
)

// Of writers racing to create one name, exactly one wins and the object holds its bytes;
// the others get ErrExists and change nothing.
func checkOneWinner(t *testing.T, store Store, u URL, read func() ([]byte, bool)) {
	t.Helper()
	const racers = 8
	var wins atomic.Int32
	var winner atomic.Value
	var wg sync.WaitGroup
	for i := range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			data := []byte{'a' + byte(i)}
			err := store.CreateExclusive(context.Background(), u, data)
			switch {
			case err == nil:
				wins.Add(1)
				winner.Store(string(data))
			case !errors.Is(err, ErrExists):
				t.Errorf("racer %d: %v, want nil or ErrExists", i, err)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d racers won, want 1", wins.Load())
	}
	if got, ok := read(); !ok || string(got) != winner.Load().(string) {
		t.Fatalf("object holds %q (exists %v), the winner wrote %q", got, ok, winner.Load())
	}
}

func TestCreateExclusiveLetsOneOfManyWritersWinOnDisk(t *testing.T) {
	dir := t.TempDir()
	u := mustURL(t, filepath.Join(dir, "out", "_claim.json"))
	checkOneWinner(t, LocalStore{}, u, func() ([]byte, bool) {
		data, err := os.ReadFile(u.Path)
		return data, err == nil
	})
	if entries, _ := os.ReadDir(filepath.Dir(u.Path)); len(entries) != 1 {
		t.Fatalf("the losers left files: %v", entries)
	}
}

func TestCreateExclusiveOnS3UsesTheConditionalPut(t *testing.T) {
	srv := testutil.StartS3(t, "bucket")
	var conditional atomic.Int32
	srv.Intercept(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodPut && r.Header.Get("If-None-Match") == "*" {
			conditional.Add(1)
		}
		return false
	})
	u := mustURL(t, "s3://bucket/out/_claim.json")
	checkOneWinner(t, OpenStore(testS3Config(srv)), u, func() ([]byte, bool) { return srv.Get(t, "bucket", "out/_claim.json") })
	if conditional.Load() == 0 {
		t.Fatal("no PUT carried If-None-Match: *")
	}
}

// A store that answers the condition with 501 Not Implemented (older S3-compatible
// servers) still gets a create-only write: a HEAD first, then a plain PUT.
func TestCreateExclusiveFallsBackWhereTheStoreLacksConditionalPuts(t *testing.T) {
	srv := testutil.StartS3(t, "bucket")
	var refused atomic.Int32
	srv.Intercept(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodPut && r.Header.Get("If-None-Match") != "" {
			refused.Add(1)
			testutil.WriteS3Error(w, r, http.StatusNotImplemented, "NotImplemented", "A header you provided implies functionality that is not implemented")
			return true
		}
		return false
	})
	store := OpenStore(testS3Config(srv))
	ctx := context.Background()
	u := mustURL(t, "s3://bucket/out/_claim.json")
	if err := store.CreateExclusive(ctx, u, []byte("first")); err != nil {
		t.Fatalf("create on a store without conditional puts: %v", err)
	}
	if err := store.CreateExclusive(ctx, u, []byte("second")); !errors.Is(err, ErrExists) {
		t.Fatalf("second create: %v, want ErrExists", err)
	}
	if got, _ := srv.Get(t, "bucket", "out/_claim.json"); string(got) != "first" || refused.Load() != 2 {
		t.Fatalf("object %q after %d refused conditional puts", got, refused.Load())
	}
}

func TestTransientTellsAnOutageFromABadShard(t *testing.T) {
	srv := testutil.StartS3(t, "bucket")
	srv.Put(t, "bucket", "in/0.tar", []byte("x"))
	cfg := testS3Config(srv)
	cfg.S3MaxAttempts = 2
	store := OpenStore(cfg)
	ctx := context.Background()
	in := mustURL(t, "s3://bucket/in/0.tar")

	_, missing := store.Stat(ctx, mustURL(t, "s3://bucket/in/nope.tar"))
	srv.Intercept(func(w http.ResponseWriter, r *http.Request) bool {
		testutil.WriteS3Error(w, r, http.StatusServiceUnavailable, "SlowDown", "reduce your request rate")
		return true
	})
	_, throttled := store.Stat(ctx, in)
	srv.Intercept(nil)
	srv.Stop()
	_, refused := store.Stat(ctx, in)
	_, openRefused := store.Open(ctx, in)
	srv.Restart(t)
	if _, err := store.Stat(ctx, in); err != nil {
		t.Fatalf("after the restart: %v", err)
	}
	_, localMissing := LocalStore{}.Stat(ctx, mustURL(t, filepath.Join(t.TempDir(), "nope.tar")))

	for _, tc := range []struct {
		name      string
		err       error
		transient bool
	}{
		{"a missing object", missing, false},
		{"a missing file", localMissing, false},
		{"a shard that is no tar", errors.New("tar shard x: not a tar archive"), false},
		{"throttling (503 SlowDown)", throttled, true},
		{"connection refused (HEAD)", refused, true},
		{"connection refused (GET)", openRefused, true},
		{"a read cut mid-stream", errors.Join(ErrInterrupted, errors.New("reset")), true},
	} {
		if tc.err == nil {
			t.Errorf("%s: no error to classify", tc.name)
			continue
		}
		if got := Transient(tc.err); got != tc.transient {
			t.Errorf("%s: Transient(%v) = %v", tc.name, tc.err, got)
		}
	}
}
