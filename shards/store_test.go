package shards

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/capfilt/capfilt/internal/testutil"
)

// storeUnderTest is one Store implementation with a writable root.
type storeUnderTest struct {
	name  string
	store Store
	root  URL
}

func storesUnderTest(t *testing.T) []storeUnderTest {
	srv := testutil.StartS3(t, "bucket")
	return []storeUnderTest{
		{"local", OpenStore(StoreConfig{}), mustURL(t, t.TempDir()+"/")},
		{"s3", OpenStore(testS3Config(srv)), mustURL(t, "s3://bucket/root/")},
	}
}

func testS3Config(srv *testutil.S3Server) StoreConfig {
	return StoreConfig{
		S3Endpoint:    srv.Endpoint,
		S3Region:      srv.Region,
		S3PathStyle:   true,
		S3Credentials: srv.Credentials(),
		S3MaxBackoff:  20 * time.Millisecond,
	}
}

func mustURL(t testing.TB, s string) URL {
	t.Helper()
	u, err := ParseURL(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func put(t testing.TB, s Store, u URL, data []byte) {
	t.Helper()
	w, err := s.Create(context.Background(), u)
	if err != nil {
		t.Fatalf("create %s: %v", u, err)
	}
	defer w.Abort()
	if _, err := w.Write(data); err != nil {
		t.Fatalf("write %s: %v", u, err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("close %s: %v", u, err)
	}
}

func readAll(t testing.TB, s Store, u URL) []byte {
	t.Helper()
	r, err := s.Open(context.Background(), u)
	if err != nil {
		t.Fatalf("open %s: %v", u, err)
	}
	defer r.Close()
	data, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("read %s: %v", u, err)
	}
	return data
}

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestStoresRoundTripObjects(t *testing.T) {
	ctx := context.Background()
	for _, st := range storesUnderTest(t) {
		t.Run(st.name, func(t *testing.T) {
			data := randomBytes(3<<20+17, 1)
			u := st.root.Join("in", "shard-00001.tar")
			put(t, st.store, u, data)
			if got := readAll(t, st.store, u); !bytes.Equal(got, data) {
				t.Fatalf("read back %d bytes, differ from the %d written", len(got), len(data))
			}
			info, err := st.store.Stat(ctx, u)
			if err != nil || info.Size != int64(len(data)) || info.URL != u {
				t.Fatalf("Stat = %+v, %v; want size %d", info, err, len(data))
			}

			ra, err := st.store.OpenAt(ctx, u)
			if err != nil {
				t.Fatalf("OpenAt: %v", err)
			}
			defer ra.Close()
			if ra.Size() != int64(len(data)) {
				t.Fatalf("OpenAt size %d, want %d", ra.Size(), len(data))
			}
			buf := make([]byte, 1000)
			if n, err := ra.ReadAt(buf, 2<<20); err != nil || n != 1000 || !bytes.Equal(buf, data[2<<20:2<<20+1000]) {
				t.Fatalf("ReadAt middle: n=%d err=%v, bytes match %v", n, err, bytes.Equal(buf, data[2<<20:2<<20+1000]))
			}
			n, err := ra.ReadAt(buf, int64(len(data)-10))
			if n != 10 || err != io.EOF || !bytes.Equal(buf[:10], data[len(data)-10:]) {
				t.Fatalf("ReadAt across the end: n=%d err=%v", n, err)
			}

			put(t, st.store, u, []byte("replaced")) // a rerun overwrites
			if got := readAll(t, st.store, u); string(got) != "replaced" {
				t.Fatalf("after overwrite read %q", got)
			}
			if err := st.store.Delete(ctx, u); err != nil {
				t.Fatalf("Delete: %v", err)
			}
			if _, err := st.store.Stat(ctx, u); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Stat after Delete: %v, want ErrNotFound", err)
			}
			if err := st.store.Delete(ctx, u); err != nil {
				t.Fatalf("Delete of a deleted object: %v, want nil", err)
			}
		})
	}
}

func TestStoresListByPrefixLikeS3(t *testing.T) {
	ctx := context.Background()
	for _, st := range storesUnderTest(t) {
		t.Run(st.name, func(t *testing.T) {
			for _, name := range []string{"in/s-0.tar", "in/s-1.tar", "in/deep/s-2.tar", "inbox/x", "other/y"} {
				put(t, st.store, st.root.Join(name), []byte(name))
			}
			cases := []struct {
				prefix string
				want   []string
			}{
				{"in/", []string{"in/deep/s-2.tar", "in/s-0.tar", "in/s-1.tar"}},
				{"in/s-", []string{"in/s-0.tar", "in/s-1.tar"}},
				{"in", []string{"in/deep/s-2.tar", "in/s-0.tar", "in/s-1.tar", "inbox/x"}},
				{"nothing/", nil},
			}
			for _, c := range cases {
				prefix := st.root
				prefix.Path += c.prefix
				infos, err := st.store.List(ctx, prefix)
				if err != nil {
					t.Fatalf("List(%s): %v", prefix, err)
				}
				var got []string
				for _, info := range infos {
					got = append(got, strings.TrimPrefix(info.URL.Path, st.root.Path))
					if info.Size != int64(len(strings.TrimPrefix(info.URL.Path, st.root.Path))) {
						t.Errorf("List(%s): %s has size %d", prefix, info.URL, info.Size)
					}
				}
				if strings.Join(got, ",") != strings.Join(c.want, ",") {
					t.Errorf("List(%s) = %v, want %v", prefix, got, c.want)
				}
			}
			all, err := Expand(ctx, st.store, st.root.String()+"in/s-*.tar")
			if err != nil || len(all) != 2 || all[1] != st.root.Join("in/s-1.tar") {
				t.Errorf("glob over the store: %v, %v", all, err)
			}
		})
	}
}

func TestStoresPublishAtomically(t *testing.T) {
	ctx := context.Background()
	for _, st := range storesUnderTest(t) {
		t.Run(st.name, func(t *testing.T) {
			u := st.root.Join("out", "shard.parquet")
			w, err := st.store.Create(ctx, u)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write([]byte("half an object")); err != nil {
				t.Fatal(err)
			}
			if _, err := st.store.Stat(ctx, u); !errors.Is(err, ErrNotFound) {
				t.Fatalf("object visible before Close: Stat err = %v", err)
			}
			if infos, _ := st.store.List(ctx, st.root.Join("out")); len(infos) != 0 {
				t.Fatalf("List shows unpublished data: %v", infos)
			}
			if err := w.Abort(); err != nil {
				t.Fatalf("Abort: %v", err)
			}
			if _, err := st.store.Stat(ctx, u); !errors.Is(err, ErrNotFound) {
				t.Fatalf("object visible after Abort: Stat err = %v", err)
			}
			if _, err := w.Write([]byte("more")); err == nil {
				t.Fatal("Write after Abort succeeded")
			}

			put(t, st.store, u, []byte("old"))
			w, _ = st.store.Create(ctx, u)
			w.Write([]byte("new but aborted"))
			w.Abort()
			if got := readAll(t, st.store, u); string(got) != "old" {
				t.Fatalf("an aborted rewrite changed the object to %q", got)
			}
			if st.root.Scheme == SchemeFile {
				entries, _ := os.ReadDir(filepath.Join(st.root.Path, "out"))
				if len(entries) != 1 {
					t.Fatalf("temp files left in the folder: %v", entries)
				}
			}
		})
	}
}

func TestStoresNameTheURLInErrors(t *testing.T) {
	ctx := context.Background()
	for _, st := range storesUnderTest(t) {
		t.Run(st.name, func(t *testing.T) {
			u := st.root.Join("missing.tar")
			_, err := st.store.Open(ctx, u)
			if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), u.String()) {
				t.Errorf("Open missing: %v", err)
			}
			if _, err := st.store.OpenAt(ctx, u); !errors.Is(err, ErrNotFound) {
				t.Errorf("OpenAt missing: %v", err)
			}
			if _, err := st.store.Stat(ctx, u); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), u.String()) {
				t.Errorf("Stat missing: %v", err)
			}
		})
	}
}

func TestLocalDiscardUnpublishedRemovesDeadWritersFiles(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	store := LocalStore{}
	u := mustURL(t, filepath.Join(dir, "out", "a[1].parquet"))
	put(t, store, u, []byte("published"))
	for i := 0; i < 2; i++ {
		w, err := store.Create(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte("abandoned")) // never closed: its process died
	}
	keep, _ := store.Create(ctx, mustURL(t, filepath.Join(dir, "out", "b.parquet")))
	keep.Write([]byte("another object's writer"))
	if err := store.DiscardUnpublished(ctx, u); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "out"))
	var published, deadTemps, liveTemps int
	for _, e := range entries {
		switch n := e.Name(); {
		case n == "a[1].parquet":
			published++
		case strings.HasPrefix(n, tempPrefix+"a[1].parquet-"):
			deadTemps++
		case strings.HasPrefix(n, tempPrefix+"b.parquet-"):
			liveTemps++
		}
	}
	if published != 1 || deadTemps != 0 || liveTemps != 1 || len(entries) != 2 {
		t.Fatalf("folder holds %v; want a[1].parquet and b.parquet's live temp file", entries)
	}
	if got := readAll(t, store, u); string(got) != "published" {
		t.Fatalf("published object changed to %q", got)
	}
	keep.Abort()
}
