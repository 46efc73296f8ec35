package checkpoint

import (
	"archive/zip"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type archiveRecord struct {
	name       string
	data       []byte
	compressed bool
}

// writeArchive builds a zip the way a (possibly broken) torch.save would.
func writeArchive(t *testing.T, records ...archiveRecord) string {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, r := range records {
		method := zip.Store
		if r.compressed {
			method = zip.Deflate
		}
		w, err := zw.CreateHeader(&zip.FileHeader{Name: r.name, Method: method})
		if err != nil {
			t.Fatal(err)
		}
		w.Write(r.data)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "model.pth")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// pickleTensor emits _rebuild_tensor_v2 over storage key (numel elements of storage type).
func pickleTensor(p *pickler, storageType, key string, numel, offset int64, shape, stride []int64) {
	p.global("torch._utils", "_rebuild_tensor_v2")
	p.op('(', '(')
	p.unicode("storage")
	p.global("torch", storageType)
	p.unicode(key)
	p.unicode("cpu")
	p.int(numel)
	p.op('t', 'Q')
	p.int(offset)
	p.intTuple(shape)
	p.intTuple(stride)
	p.op(0x89)
	p.emptyOrderedDict()
	p.op('t', 'R')
}

// stateDict pickles {name: value, ...} where each value is emitted by its function.
func stateDict(items ...any) []byte {
	p := &pickler{}
	p.op(0x80, 2, '}', '(')
	for i := 0; i < len(items); i += 2 {
		p.unicode(items[i].(string))
		items[i+1].(func(*pickler))(p)
	}
	p.op('u', '.')
	return p.b
}

func f32Tensor(key string, numel, offset int64, shape ...int64) func(*pickler) {
	return func(p *pickler) { pickleTensor(p, "FloatStorage", key, numel, offset, shape, RowMajorStrides(shape)) }
}

func TestReadTorchRejectsBrokenArchivesNamingWhatIsWrong(t *testing.T) {
	sixteen := make([]byte, 16)
	pkl := func(items ...any) archiveRecord {
		return archiveRecord{name: "archive/data.pkl", data: stateDict(items...)}
	}
	storage := func(key string, n int) archiveRecord {
		return archiveRecord{name: "archive/data/" + key, data: make([]byte, n)}
	}
	tests := []struct {
		name    string
		records []archiveRecord
		want    string
	}{
		{"compressed storage", []archiveRecord{pkl("w", f32Tensor("0", 4, 0, 4)), {name: "archive/data/0", data: sixteen, compressed: true}},
			`tensor "w": storage record archive/data/0 is compressed`},
		{"missing storage", []archiveRecord{pkl("w", f32Tensor("0", 4, 0, 4))},
			`tensor "w": storage "0": no record archive/data/0`},
		{"storage record too small", []archiveRecord{pkl("w", f32Tensor("0", 10, 0, 4)), storage("0", 8)},
			`tensor "w": storage "0" holds 10 F32 elements (40 bytes) but its record archive/data/0 has 8 bytes`},
		{"view past the storage", []archiveRecord{pkl("w", f32Tensor("0", 4, 2, 3)), storage("0", 16)},
			`tensor "w": view (offset 2, size [3], stride [1]) runs past the end of storage "0"`},
		{"strided view past the storage", []archiveRecord{pkl("w", func(p *pickler) {
			pickleTensor(p, "FloatStorage", "0", 4, 0, []int64{2, 2}, []int64{1, 3})
		}), storage("0", 16)}, `tensor "w": view (offset 0, size [2 2], stride [1 3]) runs past`},
		{"unsupported storage type", []archiveRecord{pkl("w", func(p *pickler) {
			pickleTensor(p, "ComplexFloatStorage", "0", 2, 0, []int64{2}, []int64{1})
		}), storage("0", 16)}, `tensor "w": unsupported torch storage type "ComplexFloatStorage"`},
		{"one storage as two dtypes", []archiveRecord{pkl("a", f32Tensor("0", 4, 0, 4), "b", func(p *pickler) {
			pickleTensor(p, "IntStorage", "0", 4, 0, []int64{4}, []int64{1})
		}), storage("0", 16)}, `tensor "b": storage "0" is referenced as F32 and as I32`},
		{"size that is not ints", []archiveRecord{pkl("w", func(p *pickler) {
			p.global("torch._utils", "_rebuild_tensor_v2")
			p.op('(', '(')
			p.unicode("storage")
			p.global("torch", "FloatStorage")
			p.unicode("0")
			p.unicode("cpu")
			p.int(4)
			p.op('t', 'Q')
			p.int(0)
			p.unicode("four")
			p.intTuple([]int64{1})
			p.op(0x89)
			p.emptyOrderedDict()
			p.op('t', 'R')
		}), storage("0", 16)}, `tensor "w": _rebuild_tensor_v2: size: a str, not a tuple of ints`},
		{"tensor kind capfilt cannot map", []archiveRecord{pkl("w", func(p *pickler) {
			p.global("torch._utils", "_rebuild_qtensor")
			p.op(')', 'R')
		})}, `tensor "w": built by torch._utils._rebuild_qtensor, which capfilt cannot map`},
		{"big-endian archive", []archiveRecord{pkl("w", f32Tensor("0", 4, 0, 4)), {name: "archive/byteorder", data: []byte("big")}, storage("0", 16)},
			`archive/byteorder says "big"`},
		{"TorchScript archive", []archiveRecord{pkl("w", f32Tensor("0", 4, 0, 4)), {name: "archive/constants.pkl", data: []byte{0x80, 2, ')', '.'}}},
			`TorchScript archive`},
		{"no data.pkl", []archiveRecord{storage("0", 16)}, `no <archive>/data.pkl`},
		{"top level is not a dict", []archiveRecord{{name: "archive/data.pkl", data: []byte("\x80\x02]q\x00.")}},
			`data.pkl holds a list, not a dict of tensors`},
		{"whole module pickled", []archiveRecord{{name: "archive/data.pkl", data: []byte("\x80\x02}X\x05\x00\x00\x00modelc__main__\nBLIP\n)\x81s.")}},
			`"model" holds a __main__.BLIP object, not a dict of tensors (torch.save(model) pickles the module itself`},
		{"dict without tensors", []archiveRecord{{name: "archive/data.pkl", data: []byte("\x80\x02}(X\x05\x00\x00\x00epochK\x03u.")}},
			`no tensors in the top-level dict`},
		{"corrupt pickle", []archiveRecord{{name: "archive/data.pkl", data: []byte("\x80\x02}(X\xff\x00\x00\x00epoch")}},
			`archive/data.pkl: pickle: opcode 0x58 at byte 4: truncated`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeArchive(t, tt.records...)
			_, err := ReadTorch(path)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), path) {
				t.Fatalf("err = %v\nwant it to name %s and say %q", err, path, tt.want)
			}
		})
	}
}

func TestReadTorchToleratesWhatTheWeightsDoNotNeed(t *testing.T) {
	// A training dump whose optimizer holds a tensor capfilt could not map, whose config
	// is an object of an unknown class, and whose model dict holds a non-tensor entry.
	p := &pickler{}
	p.op(0x80, 2, '}', '(')
	p.unicode("model")
	p.emptyOrderedDict()
	p.op('(')
	p.unicode("w")
	pickleTensor(p, "HalfStorage", "0", 4, 1, []int64{3}, []int64{1})
	p.unicode("w_tied")
	pickleTensor(p, "HalfStorage", "0", 4, 0, []int64{2, 2}, []int64{1, 2})
	p.unicode("_version")
	p.int(2)
	p.op('u')
	p.unicode("optimizer")
	p.op('}', '(')
	p.int(0)
	p.global("torch._utils", "_rebuild_sparse_tensor")
	p.op(')', 'R')
	p.int(1)
	pickleTensor(p, "FloatStorage", "9", 4, 0, []int64{99}, []int64{1}) // past its storage, never a weight
	p.op('u')
	p.unicode("config")
	p.global("argparse", "Namespace")
	p.op(')', 0x81, '}')
	p.unicode("vit")
	p.unicode("base")
	p.op('s', 'b')
	p.unicode("epoch")
	p.global("numpy.core.multiarray", "scalar")
	p.op(')', 'R')
	p.op('u', '.')
	path := writeArchive(t, archiveRecord{name: "m/data.pkl", data: p.b},
		archiveRecord{name: "m/data/0", data: []byte{1, 0, 2, 0, 3, 0, 4, 0}})

	ck, err := ReadTorch(path)
	if err != nil {
		t.Fatal(err)
	}
	if ck.WeightsKey != "model" || len(ck.Tensors) != 2 || strings.Join(ck.Skipped, ",") != "_version (int)" {
		t.Fatalf("key %q, %d tensors, skipped %q", ck.WeightsKey, len(ck.Tensors), ck.Skipped)
	}
	w, tied := ck.Tensors[0], ck.Tensors[1]
	if w.StorageKey != tied.StorageKey || w.StorageOffset != tied.StorageOffset || w.Offset != w.StorageOffset+2 {
		t.Errorf("records %+v and %+v should share storage, w starting one element in", w, tied)
	}
	if got := stridedBytes(t, w); !bytes.Equal(got, []byte{2, 0, 3, 0, 4, 0}) {
		t.Errorf("w = %v", got)
	}
	if got := stridedBytes(t, tied); !bytes.Equal(got, []byte{1, 0, 3, 0, 2, 0, 4, 0}) || tied.Contiguous() {
		t.Errorf("transposed view = %v, contiguous=%v", got, tied.Contiguous())
	}
}

func TestReadTorchFailsCleanlyOnTruncatedFiles(t *testing.T) {
	full, err := os.ReadFile("testdata/salesforce.pth")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, n := range []int{0, 3, 30, 100, len(full) / 2, len(full) - 30, len(full) - 1} {
		path := filepath.Join(dir, "cut.pth")
		if err := os.WriteFile(path, full[:n], 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadTorch(path); err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("cut at %d bytes: err = %v", n, err)
		}
	}
}

func TestReadTorchTellsOtherFilesApart(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ content, want string }{
		{"\x80\x02}q\x00.", "a bare pickle, not a torch.save zip archive"},
		{"hello, world", "not a torch.save zip archive"},
	} {
		path := filepath.Join(dir, "x.pth")
		os.WriteFile(path, []byte(tc.content), 0o644)
		if _, err := ReadTorch(path); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err = %v, want %q", tc.content, err, tc.want)
		}
	}
}
