package checkpoint

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// tensorsOf turns every record of a checkpoint into something to write, with its bytes.
func tensorsOf(t *testing.T, ck *Checkpoint) ([]TensorToWrite, map[string][]byte) {
	t.Helper()
	var out []TensorToWrite
	data := map[string][]byte{}
	for _, r := range ck.Tensors {
		f, err := os.Open(r.Path)
		if err != nil {
			t.Fatal(err)
		}
		b, err := r.ReadData(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		data[r.Name] = b
		out = append(out, TensorToWrite{Name: r.Name, DType: r.DType, Shape: r.Shape, Data: bytes.NewReader(b)})
	}
	return out, data
}

func fixtureTensors(t *testing.T) ([]TensorToWrite, map[string][]byte) {
	t.Helper()
	ck, err := ReadTorch("testdata/state_dict.pth")
	if err != nil {
		t.Fatal(err)
	}
	return tensorsOf(t, ck)
}

// checkReadsBack asserts that ck holds exactly the tensors, contiguous, with their bytes.
func checkReadsBack(t *testing.T, ck *Checkpoint, tensors []TensorToWrite, data map[string][]byte) {
	t.Helper()
	if len(ck.Tensors) != len(tensors) {
		t.Fatalf("read %d tensors, wrote %d", len(ck.Tensors), len(tensors))
	}
	for _, w := range tensors {
		r, ok := ck.Tensor(w.Name)
		if !ok {
			t.Fatalf("%s not read back", w.Name)
		}
		if r.DType != w.DType || !slices.Equal(r.Shape, cloneShape(w.Shape)) || !r.Contiguous() {
			t.Errorf("%s: %v %v contiguous=%v, wrote %v %v", w.Name, r.DType, r.Shape, r.Contiguous(), w.DType, w.Shape)
		}
		if r.Offset%int64(r.DType.Size()) != 0 {
			t.Errorf("%s: offset %d not aligned to its elements", w.Name, r.Offset)
		}
		if got := stridedBytes(t, r); !bytes.Equal(got, data[w.Name]) {
			t.Errorf("%s: read back %x, wrote %x", w.Name, got, data[w.Name])
		}
	}
}

func TestSafetensorsRoundTrip(t *testing.T) {
	tensors, data := fixtureTensors(t)
	path := filepath.Join(t.TempDir(), "model.safetensors")
	meta := map[string]string{"format": "pt", "note": "<capfilt & blip>"}
	if err := WriteSafetensors(path, tensors, meta); err != nil {
		t.Fatal(err)
	}
	ck, err := ReadSafetensors(path)
	if err != nil {
		t.Fatal(err)
	}
	checkReadsBack(t, ck, tensors, data)
	if !maps.Equal(ck.Metadata, meta) {
		t.Errorf("metadata %v, want %v", ck.Metadata, meta)
	}

	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := binary.LittleEndian.Uint64(raw)
	header := raw[8 : 8+n]
	if n%8 != 0 || strings.TrimRight(string(header), " ") != strings.TrimSpace(string(header)) {
		t.Errorf("header of %d bytes should be space-padded to a multiple of 8: %q", n, header[len(header)-8:])
	}
	if !bytes.Contains(header, []byte(`"<capfilt & blip>"`)) {
		t.Errorf("metadata should be written without HTML escaping: %s", header)
	}
	var keys []string
	dec := json.NewDecoder(bytes.NewReader(header))
	dec.Token()
	for dec.More() {
		k, _ := dec.Token()
		keys = append(keys, k.(string))
		var skip json.RawMessage
		dec.Decode(&skip)
	}
	if !slices.IsSorted(keys) || keys[0] != "__metadata__" {
		t.Errorf("header keys not sorted: %q", keys)
	}
	if matches, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".*tmp*")); len(matches) > 0 {
		t.Errorf("temporary files left behind: %q", matches)
	}
}

func TestWritersRejectDataThatDoesNotMatchTheShape(t *testing.T) {
	four := func() io.Reader { return bytes.NewReader(make([]byte, 16)) }
	tests := []struct {
		name    string
		tensors []TensorToWrite
		want    string
	}{
		{"short data", []TensorToWrite{{Name: "w", DType: F32, Shape: []int64{5}, Data: four()}}, `tensor "w": data has 16 bytes`},
		{"long data", []TensorToWrite{{Name: "w", DType: F32, Shape: []int64{3}, Data: four()}}, `tensor "w": data has more than the 12 bytes`},
		{"duplicate name", []TensorToWrite{{Name: "w", DType: F32, Shape: []int64{4}, Data: four()}, {Name: "w", DType: F32, Shape: []int64{4}, Data: four()}}, `"w" given twice`},
		{"invalid dtype", []TensorToWrite{{Name: "w", Shape: []int64{4}, Data: four()}}, `"w": invalid dtype`},
		{"negative shape", []TensorToWrite{{Name: "w", DType: F32, Shape: []int64{-4}, Data: four()}}, `"w": negative dimension`},
		{"no data", []TensorToWrite{{Name: "w", DType: F32, Shape: []int64{4}}}, `"w": no data`},
		{"reserved name", []TensorToWrite{{Name: "__metadata__", DType: F32, Shape: []int64{4}, Data: four()}}, `"__metadata__" is not allowed`},
	}
	writers := map[string]func(string, []TensorToWrite) error{
		"safetensors": func(p string, ts []TensorToWrite) error { return WriteSafetensors(p, ts, nil) },
		"torch":       func(p string, ts []TensorToWrite) error { return WriteTorchZip(p, ts, true) },
	}
	for wname, write := range writers {
		for _, tt := range tests {
			t.Run(wname+"/"+tt.name, func(t *testing.T) {
				dir := t.TempDir()
				path := filepath.Join(dir, "out")
				if err := os.WriteFile(path, []byte("previous"), 0o644); err != nil {
					t.Fatal(err)
				}
				for i := range tt.tensors { // each subtest needs fresh readers
					tt.tensors[i].Data = freshReader(tt.tensors[i].Data)
				}
				err := write(path, tt.tensors)
				if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), path) {
					t.Fatalf("err = %v, want it to name %s and say %q", err, path, tt.want)
				}
				if b, _ := os.ReadFile(path); string(b) != "previous" {
					t.Errorf("a failed write replaced the previous file")
				}
				if entries, _ := os.ReadDir(dir); len(entries) != 1 {
					t.Errorf("a failed write left files behind: %v", entries)
				}
			})
		}
	}
}

func freshReader(r io.Reader) io.Reader {
	if br, ok := r.(*bytes.Reader); ok {
		br.Seek(0, io.SeekStart)
	}
	return r
}

func TestShardedSafetensorsSplitAndReadBackThroughTheIndex(t *testing.T) {
	tensors, data := fixtureTensors(t)
	dir := t.TempDir()
	files, err := WriteSafetensorsSharded(dir, tensors, map[string]string{"format": "pt"}, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 3 || filepath.Base(files[len(files)-1]) != SafetensorsIndexName {
		t.Fatalf("files %q: want several shards and the index last", files)
	}
	shards := len(files) - 1
	for i, f := range files[:shards] {
		if want := fmt.Sprintf("model-%05d-of-%05d.safetensors", i+1, shards); filepath.Base(f) != want {
			t.Errorf("shard %d is %s, want %s", i, filepath.Base(f), want)
		}
		ck, err := ReadSafetensors(f)
		if err != nil {
			t.Fatal(err)
		}
		var size int64
		for _, r := range ck.Tensors {
			size += r.NumBytes()
		}
		if size > 100 && len(ck.Tensors) > 1 {
			t.Errorf("%s holds %d bytes in %d tensors, over the 100-byte limit", f, size, len(ck.Tensors))
		}
	}
	ck, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	checkReadsBack(t, ck, tensors, data)
	if len(ck.Files) != shards || ck.Metadata["format"] != "pt" {
		t.Errorf("files %q, metadata %v", ck.Files, ck.Metadata)
	}
	var index struct {
		Metadata struct {
			TotalSize int64 `json:"total_size"`
		} `json:"metadata"`
		WeightMap map[string]string `json:"weight_map"`
	}
	raw, _ := os.ReadFile(files[shards])
	if err := json.Unmarshal(raw, &index); err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, b := range data {
		total += int64(len(b))
	}
	if index.Metadata.TotalSize != total || len(index.WeightMap) != len(tensors) {
		t.Errorf("index total_size %d (want %d), %d names (want %d)", index.Metadata.TotalSize, total, len(index.WeightMap), len(tensors))
	}
}

func TestShardedWriterWritesOneFileWhenEverythingFits(t *testing.T) {
	tensors, data := fixtureTensors(t)
	dir := t.TempDir()
	files, err := WriteSafetensorsSharded(dir, tensors, nil, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 1 || filepath.Base(files[0]) != "model.safetensors" {
		t.Fatalf("files %q", files)
	}
	ck, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	checkReadsBack(t, ck, tensors, data)
}

func TestTorchZipRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name             string
		wrap, forceZip64 bool
	}{
		{"bare state dict", false, false},
		{"salesforce layout", true, false},
		{"zip64", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tensors, data := fixtureTensors(t)
			path := filepath.Join(t.TempDir(), "out.pth")
			if err := writeTorchZip(path, tensors, tc.wrap, tc.forceZip64); err != nil {
				t.Fatal(err)
			}
			ck, err := ReadTorch(path)
			if err != nil {
				t.Fatal(err)
			}
			checkReadsBack(t, ck, tensors, data)
			if wantKey := map[bool]string{true: "model"}[tc.wrap]; ck.WeightsKey != wantKey {
				t.Errorf("weights key %q, want %q", ck.WeightsKey, wantKey)
			}
			// Every record torch.save would write, stored and 64-byte aligned, with
			// CRCs that archive/zip verifies on read.
			zr, err := zip.OpenReader(path)
			if err != nil {
				t.Fatal(err)
			}
			defer zr.Close()
			var names []string
			for _, f := range zr.File {
				names = append(names, f.Name)
				off, err := f.DataOffset()
				if err != nil || off%64 != 0 || f.Method != zip.Store {
					t.Errorf("%s: data at %d (%v), method %d; want stored, 64-byte aligned", f.Name, off, err, f.Method)
				}
				rc, err := f.Open()
				if err != nil {
					t.Fatal(err)
				}
				content, err := io.ReadAll(rc)
				rc.Close()
				if err != nil {
					t.Errorf("%s: %v", f.Name, err)
				}
				switch f.Name {
				case "archive/version":
					if string(content) != "3\n" {
						t.Errorf("version %q", content)
					}
				case "archive/byteorder":
					if string(content) != "little" {
						t.Errorf("byteorder %q", content)
					}
				}
			}
			if len(names) != len(tensors)+3 || names[0] != "archive/data.pkl" || names[len(names)-1] != "archive/version" {
				t.Errorf("records %q", names)
			}
		})
	}
}

// TestExportForTorchLoad writes files for testdata/check_torch_load.py, which checks
// with real torch that torch.load reads them. It runs only when that script asks.
func TestExportForTorchLoad(t *testing.T) {
	dir := os.Getenv("CAPFILT_CHECKPOINT_EXPORT_DIR")
	if dir == "" {
		t.Skip("set CAPFILT_CHECKPOINT_EXPORT_DIR (testdata/check_torch_load.py does)")
	}
	for _, src := range []string{"state_dict.pth", "salesforce.pth"} {
		ck, err := ReadTorch(filepath.Join("testdata", src))
		if err != nil {
			t.Fatal(err)
		}
		stem := strings.TrimSuffix(src, ".pth")
		write := func(name string, fn func([]TensorToWrite) error) {
			tensors, _ := tensorsOf(t, ck)
			if err := fn(tensors); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		}
		write("bare", func(ts []TensorToWrite) error {
			return WriteTorchZip(filepath.Join(dir, stem+".bare.pth"), ts, false)
		})
		write("wrapped", func(ts []TensorToWrite) error {
			return WriteTorchZip(filepath.Join(dir, stem+".wrapped.pth"), ts, true)
		})
		write("zip64", func(ts []TensorToWrite) error {
			return writeTorchZip(filepath.Join(dir, stem+".zip64.pth"), ts, true, true)
		})
		write("safetensors", func(ts []TensorToWrite) error {
			return WriteSafetensors(filepath.Join(dir, stem+".safetensors"), ts, map[string]string{"format": "pt"})
		})
		write("sharded", func(ts []TensorToWrite) error {
			sub := filepath.Join(dir, stem+".sharded")
			if err := os.MkdirAll(sub, 0o755); err != nil {
				return err
			}
			_, err := WriteSafetensorsSharded(sub, ts, nil, 64)
			return err
		})
	}
}
