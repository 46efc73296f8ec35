package shards

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// tempPrefix starts the name of every file a LocalStore writer has not yet published;
// List skips such files, so a reader never sees half an object.
const tempPrefix = ".capfilt-tmp-"

// LocalStore keeps objects as files. Create writes a temporary file in the destination
// folder, syncs it, and renames it into place on Close, so the object appears whole or
// not at all, even across a crash.
type LocalStore struct{}

func (LocalStore) check(u URL) error {
	if u.Scheme != SchemeFile {
		return fmt.Errorf("%s: not a local path", u)
	}
	return nil
}

func localErr(op string, u URL, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%s %s: %w", op, u, ErrNotFound)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("%s %s: %w", op, u, ErrAccessDenied)
	}
	return fmt.Errorf("%s %s: %w", op, u, err)
}

func (s LocalStore) Open(ctx context.Context, u URL) (io.ReadCloser, error) {
	f, err := s.openFile(u)
	if err != nil {
		return nil, err
	}
	return f, nil
}

func (s LocalStore) openFile(u URL) (*os.File, error) {
	if err := s.check(u); err != nil {
		return nil, err
	}
	f, err := os.Open(u.Path)
	if err != nil {
		return nil, localErr("open", u, err)
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		if err != nil {
			return nil, localErr("open", u, err)
		}
		return nil, fmt.Errorf("open %s: not a regular file", u)
	}
	return f, nil
}

type localReaderAt struct {
	*os.File
	size int64
}

func (r localReaderAt) Size() int64 { return r.size }

func (s LocalStore) OpenAt(ctx context.Context, u URL) (ObjectReaderAt, error) {
	f, err := s.openFile(u)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, localErr("open", u, err)
	}
	return localReaderAt{File: f, size: fi.Size()}, nil
}

func (s LocalStore) Stat(ctx context.Context, u URL) (ObjectInfo, error) {
	if err := s.check(u); err != nil {
		return ObjectInfo{}, err
	}
	fi, err := os.Stat(u.Path)
	if err != nil {
		return ObjectInfo{}, localErr("stat", u, err)
	}
	if !fi.Mode().IsRegular() {
		return ObjectInfo{}, fmt.Errorf("stat %s: not a regular file", u)
	}
	return ObjectInfo{URL: u, Size: fi.Size(), ModTime: fi.ModTime()}, nil
}

// List walks the folder the prefix is in (or the prefix itself when it ends in a slash)
// and keeps the regular files whose path starts with the prefix, as S3 lists keys.
func (s LocalStore) List(ctx context.Context, prefix URL) ([]ObjectInfo, error) {
	if err := s.check(prefix); err != nil {
		return nil, err
	}
	want := prefix.Path
	root := filepath.Dir(want)
	if strings.HasSuffix(want, "/") {
		root = want
	}
	if want == "." {
		want = "" // "." lists the working directory, whose entries walk as "a", not "./a"
	}
	var out []ObjectInfo
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p == root {
				return fs.SkipAll
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if d.IsDir() {
			if p != root && !strings.HasPrefix(p+"/", want) && !strings.HasPrefix(want, p+"/") {
				return fs.SkipDir
			}
			return nil
		}
		if !strings.HasPrefix(p, want) || strings.HasPrefix(d.Name(), tempPrefix) {
			return nil
		}
		fi, err := os.Stat(p) // follows a link to the file it names
		if err != nil || !fi.Mode().IsRegular() {
			return nil
		}
		out = append(out, ObjectInfo{URL: URL{Scheme: SchemeFile, Path: p}, Size: fi.Size(), ModTime: fi.ModTime()})
		return nil
	})
	if err != nil {
		return nil, localErr("list", prefix, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].URL.Path < out[j].URL.Path })
	return out, nil
}

func (s LocalStore) Delete(ctx context.Context, u URL) error {
	if err := s.check(u); err != nil {
		return err
	}
	if err := os.Remove(u.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return localErr("delete", u, err)
	}
	return nil
}

func (s LocalStore) Create(ctx context.Context, u URL) (ObjectWriter, error) {
	if err := s.check(u); err != nil {
		return nil, err
	}
	if strings.HasSuffix(u.Path, "/") {
		return nil, fmt.Errorf("create %s: names a folder, not an object", u)
	}
	dir := filepath.Dir(u.Path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, localErr("create", u, err)
	}
	f, err := os.CreateTemp(dir, tempPrefix+filepath.Base(u.Path)+"-*")
	if err != nil {
		return nil, localErr("create", u, err)
	}
	return &localWriter{u: u, f: f}, nil
}

// CreateExclusive creates the file with O_EXCL, so the file system decides which of two
// creators wins, and syncs it and its folder before it returns.
func (s LocalStore) CreateExclusive(ctx context.Context, u URL, data []byte) error {
	if err := s.check(u); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(u.Path), 0o755); err != nil {
		return localErr("create", u, err)
	}
	f, err := os.OpenFile(u.Path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("create %s: %w", u, ErrExists)
	}
	if err != nil {
		return localErr("create", u, err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(u.Path) // half a marker would claim the name for nobody
		return localErr("create", u, err)
	}
	if d, err := os.Open(filepath.Dir(u.Path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

type localWriter struct {
	u    URL
	f    *os.File
	done bool
}

func (w *localWriter) Write(p []byte) (int, error) {
	if w.done {
		return 0, fmt.Errorf("write %s: %w", w.u, errWriterDone)
	}
	n, err := w.f.Write(p)
	if err != nil {
		return n, localErr("write", w.u, err)
	}
	return n, nil
}

// Close publishes: sync the data, rename over the destination, sync the folder so the
// rename itself survives a crash.
func (w *localWriter) Close() error {
	if w.done {
		return fmt.Errorf("close %s: %w", w.u, errWriterDone)
	}
	err := w.f.Sync()
	if err == nil {
		err = w.f.Chmod(0o644)
	}
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(w.f.Name(), w.u.Path)
	}
	if err != nil {
		os.Remove(w.f.Name())
		w.done = true
		return localErr("publish", w.u, err)
	}
	w.done = true
	if d, err := os.Open(filepath.Dir(w.u.Path)); err == nil {
		err = d.Sync()
		d.Close()
		if err != nil {
			return localErr("publish", w.u, err)
		}
	}
	return nil
}

func (w *localWriter) Abort() error {
	if w.done {
		return nil
	}
	w.done = true
	w.f.Close()
	if err := os.Remove(w.f.Name()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return localErr("abort", w.u, err)
	}
	return nil
}

// DiscardUnpublished removes the temporary files of writers to u that never finished.
func (s LocalStore) DiscardUnpublished(ctx context.Context, u URL) error {
	if err := s.check(u); err != nil {
		return err
	}
	matches, err := filepath.Glob(filepath.Join(filepath.Dir(u.Path), tempPrefix+globEscape(filepath.Base(u.Path))+"-*"))
	if err != nil {
		return fmt.Errorf("discard unpublished %s: %w", u, err)
	}
	for _, m := range matches {
		if err := os.Remove(m); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return localErr("discard unpublished", u, err)
		}
	}
	return nil
}

// globEscape quotes the characters filepath.Match treats specially.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '*', '?', '[', '\\':
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
