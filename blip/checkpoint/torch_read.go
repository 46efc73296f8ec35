package checkpoint

import (
	"archive/zip"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// ErrLegacyTorch is returned (wrapped) for files written by torch.save before torch 1.6
// or with _use_new_zipfile_serialization=False: their storages follow the pickle inside
// one stream, so they cannot be mapped.
var ErrLegacyTorch = errors.New("legacy torch serialization; re-save with torch>=1.6")

// legacyTorchMagic is how a legacy torch.save stream starts: PROTO 2, then LONG1 of the
// magic number 0x1950a86a20f9469cfc6c.
var legacyTorchMagic = []byte("\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19")

// ReadTorch reads the tensor records of a torch.save zip archive (torch >= 1.6): a
// Salesforce BLIP .pth (weights under "model", beside optimizer, config, epoch, ...), a
// state dict under "state_dict", or a bare state dict such as HF's pytorch_model.bin.
// Only data.pkl is read; the storages stay on disk.
func ReadTorch(path string) (*Checkpoint, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("torch checkpoint %s: %w", path, err)
	}
	f, err := os.Open(abs)
	if err != nil {
		return nil, fmt.Errorf("torch checkpoint: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("torch checkpoint %s: %w", path, err)
	}
	ck, err := readTorch(f, fi.Size(), abs)
	if err != nil {
		return nil, fmt.Errorf("torch checkpoint %s: %w", path, err)
	}
	return ck, nil
}

func readTorch(f io.ReaderAt, size int64, path string) (*Checkpoint, error) {
	if err := sniffTorch(f, size); err != nil {
		return nil, err
	}
	zr, err := zip.NewReader(f, size)
	if err != nil {
		return nil, fmt.Errorf("read zip directory: %w", err)
	}
	arch, err := findArchive(zr)
	if err != nil {
		return nil, err
	}
	if err := checkByteOrder(arch); err != nil {
		return nil, err
	}
	pkl, err := readPickleEntry(arch.pickle)
	if err != nil {
		return nil, err
	}
	root, err := unpickle(pkl, torchHooks, defaultPickleLimits)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", arch.pickle.Name, err)
	}
	weights, key, err := selectWeights(root)
	if err != nil {
		return nil, err
	}
	ck := &Checkpoint{Format: TorchZip, WeightsKey: key, Files: []string{path}}
	storages := map[string]*storageSpan{}
	for i, k := range weights.keys {
		name, ok := k.(string)
		if !ok {
			ck.Skipped = append(ck.Skipped, fmt.Sprintf("key %v (%s)", k, describe(k)))
			continue
		}
		switch v := weights.vals[i].(type) {
		case *torchTensor:
			rec, err := arch.record(name, v, path, size, storages)
			if err != nil {
				return nil, fmt.Errorf("tensor %q: %w", name, err)
			}
			ck.Tensors = append(ck.Tensors, rec)
		case *pyObject:
			if v.err != nil {
				return nil, fmt.Errorf("tensor %q: %w", name, v.err)
			}
			if g, ok := v.callable.(pyGlobal); ok && strings.HasPrefix(g.Module, "torch") {
				return nil, fmt.Errorf("tensor %q: built by %s, which capfilt cannot map", name, g)
			}
			ck.Skipped = append(ck.Skipped, fmt.Sprintf("%s (%s)", name, describe(v)))
		default:
			ck.Skipped = append(ck.Skipped, fmt.Sprintf("%s (%s)", name, describe(v)))
		}
	}
	if len(ck.Tensors) == 0 && len(weights.keys) > 0 {
		return nil, fmt.Errorf("no tensors in %s", weightsPlace(key))
	}
	return ck, nil
}

func weightsPlace(key string) string {
	if key == "" {
		return "the top-level dict"
	}
	return fmt.Sprintf("%q", key)
}

// sniffTorch tells a legacy torch file from a zip archive before archive/zip reports a
// less helpful "not a valid zip file".
func sniffTorch(f io.ReaderAt, size int64) error {
	head := make([]byte, min(size, 512))
	if err := readFull(f, head, 0); err != nil {
		return err
	}
	switch {
	case bytes.HasPrefix(head, []byte("PK\x03\x04")):
		return nil
	case bytes.HasPrefix(head, legacyTorchMagic):
		return ErrLegacyTorch
	case len(head) >= 262 && string(head[257:262]) == "ustar": // torch < 0.4 wrote tar
		return ErrLegacyTorch
	case len(head) > 0 && head[0] == 0x80:
		return fmt.Errorf("a bare pickle, not a torch.save zip archive")
	}
	return fmt.Errorf("not a torch.save zip archive")
}

type torchArchive struct {
	prefix   string // "archive" in torch >= 2, the file's stem in earlier versions
	pickle   *zip.File
	byteOrd  *zip.File
	storages map[string]*zip.File // by key
}

func findArchive(zr *zip.Reader) (*torchArchive, error) {
	var pickles []*zip.File
	script := false
	for _, f := range zr.File {
		dir, base, ok := strings.Cut(f.Name, "/")
		if !ok {
			continue
		}
		if base == "data.pkl" {
			pickles = append(pickles, f)
		}
		if dir != "" && (base == "constants.pkl" || strings.HasPrefix(base, "code/")) {
			script = true
		}
	}
	switch {
	case script:
		return nil, fmt.Errorf("a TorchScript archive (torch.jit.save), not a torch.save state dict")
	case len(pickles) == 0:
		return nil, fmt.Errorf("zip holds no <archive>/data.pkl")
	case len(pickles) > 1:
		return nil, fmt.Errorf("zip holds %d data.pkl records (%s, %s, ...)", len(pickles), pickles[0].Name, pickles[1].Name)
	}
	a := &torchArchive{pickle: pickles[0], storages: map[string]*zip.File{}}
	a.prefix, _, _ = strings.Cut(a.pickle.Name, "/")
	for _, f := range zr.File {
		if key, ok := strings.CutPrefix(f.Name, a.prefix+"/data/"); ok && key != "" {
			a.storages[key] = f
		}
		if f.Name == a.prefix+"/byteorder" {
			a.byteOrd = f
		}
	}
	return a, nil
}

func checkByteOrder(a *torchArchive) error {
	if a.byteOrd == nil { // torch < 2.1 wrote none, and only little-endian
		return nil
	}
	b, err := readSmallEntry(a.byteOrd, 16)
	if err != nil {
		return err
	}
	if order := strings.TrimSpace(string(b)); order != "little" {
		return fmt.Errorf("%s says %q; only little-endian checkpoints can be mapped", a.byteOrd.Name, order)
	}
	return nil
}

func readPickleEntry(f *zip.File) ([]byte, error) {
	if f.UncompressedSize64 > uint64(defaultPickleLimits.maxBytes) {
		return nil, fmt.Errorf("%s is %d bytes, more than the limit of %d", f.Name, f.UncompressedSize64, defaultPickleLimits.maxBytes)
	}
	return readSmallEntry(f, int64(defaultPickleLimits.maxBytes))
}

func readSmallEntry(f *zip.File, limit int64) ([]byte, error) {
	rc, err := f.Open()
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", f.Name, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", f.Name, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", f.Name, limit)
	}
	return b, nil
}

// storageSpan is where one storage record's bytes lie in the file.
type storageSpan struct {
	offset int64
	bytes  int64
	dtype  DType
}

// record turns a tensor of the weights dict into a TensorRecord, checking that every
// byte it can touch lies inside its storage and the storage inside the file.
func (a *torchArchive) record(name string, t *torchTensor, path string, fileSize int64, spans map[string]*storageSpan) (TensorRecord, error) {
	st := t.storage
	entry, ok := a.storages[st.key]
	if !ok {
		return TensorRecord{}, fmt.Errorf("storage %q: no record %s/data/%s in the archive", st.key, a.prefix, st.key)
	}
	span, ok := spans[st.key]
	if !ok {
		var err error
		if span, err = locateStorage(entry, st, fileSize); err != nil {
			return TensorRecord{}, err
		}
		spans[st.key] = span
	} else if span.dtype != st.dtype {
		return TensorRecord{}, fmt.Errorf("storage %q is referenced as %s and as %s", st.key, span.dtype, st.dtype)
	}
	_, extent, err := viewExtent(t.shape, t.strides)
	if err != nil {
		return TensorRecord{}, err
	}
	esz := int64(t.dtype.Size())
	if t.offset > (span.bytes/esz)-extent {
		return TensorRecord{}, fmt.Errorf("view (offset %d, size %v, stride %v) runs past the end of storage %q (%d bytes of %s)",
			t.offset, t.shape, t.strides, st.key, span.bytes, t.dtype)
	}
	return TensorRecord{
		Name:          name,
		DType:         t.dtype,
		Shape:         cloneShape(t.shape),
		Strides:       cloneShape(t.strides),
		Path:          path,
		Offset:        span.offset + t.offset*esz,
		StorageKey:    path + "::" + entry.Name,
		StorageOffset: span.offset,
		StorageBytes:  span.bytes,
	}, nil
}

func locateStorage(entry *zip.File, st *torchStorage, fileSize int64) (*storageSpan, error) {
	if entry.Method != zip.Store {
		return nil, fmt.Errorf("storage record %s is compressed (method %d); torch writes storages stored so they can be mapped", entry.Name, entry.Method)
	}
	if entry.Flags&0x1 != 0 {
		return nil, fmt.Errorf("storage record %s is encrypted", entry.Name)
	}
	off, err := entry.DataOffset()
	if err != nil {
		return nil, fmt.Errorf("storage record %s: local header: %w", entry.Name, err)
	}
	size := entry.UncompressedSize64
	if entry.CompressedSize64 != size || off < 0 || size > uint64(fileSize) || uint64(off) > uint64(fileSize)-size {
		return nil, fmt.Errorf("storage record %s (%d bytes at %d) does not fit in the %d-byte file", entry.Name, size, off, fileSize)
	}
	need := st.numel * int64(st.dtype.Size())
	if uint64(need) > size {
		return nil, fmt.Errorf("storage %q holds %d %s elements (%d bytes) but its record %s has %d bytes", st.key, st.numel, st.dtype, need, entry.Name, size)
	}
	return &storageSpan{offset: off, bytes: need, dtype: st.dtype}, nil
}

// selectWeights finds the state dict: under "model" (Salesforce training dumps), under
// "state_dict", or the top-level dict itself.
func selectWeights(root any) (*pyDict, string, error) {
	d, ok := root.(*pyDict)
	if !ok {
		return nil, "", fmt.Errorf("data.pkl holds a %s, not a dict of tensors%s", describe(root), moduleHint(root))
	}
	for _, key := range []string{"model", "state_dict"} {
		v, ok := d.get(key)
		if !ok {
			continue
		}
		if inner, ok := v.(*pyDict); ok {
			return inner, key, nil
		}
		if _, isTensor := v.(*torchTensor); !isTensor {
			return nil, "", fmt.Errorf("%q holds a %s, not a dict of tensors%s", key, describe(v), moduleHint(v))
		}
	}
	return d, "", nil
}

// moduleHint explains the usual cause of an object where a state dict should be.
func moduleHint(v any) string {
	if _, ok := v.(*pyObject); ok {
		return " (torch.save(model) pickles the module itself; save model.state_dict() instead)"
	}
	return ""
}
