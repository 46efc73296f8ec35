package checkpoint

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// rawSafetensors writes a file with the given header text and n data bytes.
func rawSafetensors(t *testing.T, header string, n int) string {
	t.Helper()
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	b = append(b, header...)
	b = append(b, make([]byte, n)...)
	path := filepath.Join(t.TempDir(), "model.safetensors")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestReadSafetensorsAcceptsWellFormedHeaders(t *testing.T) {
	header := `{"b":{"dtype":"BF16","shape":[2],"data_offsets":[8,12]},` +
		`"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"s":{"dtype":"I64","shape":[],"data_offsets":[16,24]},` +
		`"e":{"dtype":"BOOL","shape":[0,3],"data_offsets":[12,12]},"__metadata__":{"format":"pt"}}    `
	path := rawSafetensors(t, header, 24)
	ck, err := ReadSafetensors(path)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range ck.Tensors {
		names = append(names, r.Name)
	}
	if strings.Join(names, ",") != "a,b,e,s" {
		t.Errorf("tensors %v, want them in data order a,b,e,s", names)
	}
	data := int64(8 + len(header))
	a, _ := ck.Tensor("a")
	s, _ := ck.Tensor("s")
	if a.Offset != data || s.Offset != data+16 || len(s.Shape) != 0 || s.NumBytes() != 8 || s.StorageBytes != 8 {
		t.Errorf("a at %d, s at %d (shape %v, %d bytes); data starts at %d", a.Offset, s.Offset, s.Shape, s.StorageBytes, data)
	}
	if a.StorageKey == s.StorageKey {
		t.Error("safetensors tensors must not share a storage key")
	}
}

func TestReadSafetensorsRejectsCorruptHeaders(t *testing.T) {
	f32 := func(name, shape, offs string) string {
		return `"` + name + `":{"dtype":"F32","shape":` + shape + `,"data_offsets":` + offs + `}`
	}
	tests := []struct {
		name   string
		header string
		data   int
		want   string
	}{
		{"not JSON", `{"a":`, 0, "header JSON"},
		{"not an object", `[1,2]   `, 0, "not a JSON object"},
		{"trailing bytes", `{}xyz`, 0, "trailing bytes"},
		{"nul padding", "{}\x00\x00", 0, "trailing bytes"},
		{"duplicate name", `{` + f32("a", "[1]", "[0,4]") + `,` + f32("a", "[1]", "[4,8]") + `}`, 8, `names "a" twice`},
		{"unknown dtype", `{"w":{"dtype":"F8_E4M3","shape":[1],"data_offsets":[0,1]}}`, 1, `tensor "w": unsupported safetensors dtype "F8_E4M3"`},
		{"missing field", `{"w":{"dtype":"F32","shape":[1]}}`, 4, `tensor "w": entry needs dtype, shape and data_offsets`},
		{"shape and bytes disagree", `{` + f32("w", "[3]", "[0,8]") + `}`, 8, `tensor "w": shape [3] of F32 needs 12 bytes, data_offsets span 8`},
		{"negative dimension", `{` + f32("w", "[-1]", "[0,0]") + `}`, 0, `tensor "w": negative dimension`},
		{"fractional dimension", `{` + f32("w", "[1.5]", "[0,4]") + `}`, 4, `tensor "w": bad entry`},
		{"huge shape", `{` + f32("w", "[4294967296,4294967296]", "[0,4]") + `}`, 4, `tensor "w": shape [4294967296 4294967296] is too large`},
		{"offsets past the data", `{` + f32("w", "[2]", "[0,8]") + `}`, 4, `tensor "w": data_offsets [0, 8] outside the 4 data bytes`},
		{"offsets reversed", `{` + f32("w", "[1]", "[8,4]") + `}`, 8, `tensor "w": data_offsets [8, 4]`},
		{"three offsets", `{` + f32("w", "[1]", "[0,4,8]") + `}`, 8, `tensor "w": data_offsets has 3 values`},
		{"negative offset", `{` + f32("w", "[1]", "[-4,0]") + `}`, 8, `tensor "w": bad entry`},
		{"overlap", `{` + f32("a", "[2]", "[0,8]") + `,` + f32("b", "[2]", "[4,12]") + `}`, 12, `tensors "a" [0, 8) and "b" [4, 12) overlap`},
		{"metadata not strings", `{"__metadata__":{"epoch":3}}`, 0, "__metadata__ must map strings to strings"},
		{"empty name", `{` + f32("", "[1]", "[0,4]") + `}`, 4, "empty tensor name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := rawSafetensors(t, tt.header, tt.data)
			_, err := ReadSafetensors(path)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), path) {
				t.Fatalf("err = %v\nwant it to name %s and say %q", err, path, tt.want)
			}
		})
	}
}

func TestReadSafetensorsRejectsAbsurdHeaderLengths(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name    string
		content []byte
		want    string
	}{
		{"shorter than a length", []byte{1, 2, 3}, "too short"},
		{"beyond the limit", binary.LittleEndian.AppendUint64(nil, 1<<40), "exceeds the limit"},
		{"beyond the file", append(binary.LittleEndian.AppendUint64(nil, 100), "{}"...), "runs past the end of the 10-byte file"},
	} {
		path := filepath.Join(dir, tc.name)
		os.WriteFile(path, tc.content, 0o644)
		if _, err := ReadSafetensors(path); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestReadSafetensorsFailsCleanlyOnTruncatedFiles(t *testing.T) {
	full, err := os.ReadFile("testdata/hf_safetensors/model.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, n := range []int{0, 7, 8, 9, 500, len(full) - 1} {
		path := filepath.Join(dir, "cut.safetensors")
		os.WriteFile(path, full[:n], 0o644)
		if _, err := ReadSafetensors(path); err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("cut at %d of %d bytes: err = %v", n, len(full), err)
		}
	}
}

func TestReadIndexRejectsInconsistentShards(t *testing.T) {
	one := func(dir, file, name string) {
		t.Helper()
		ts := []TensorToWrite{{Name: name, DType: U8, Shape: []int64{1}, Data: strings.NewReader("x")}}
		if err := WriteSafetensors(filepath.Join(dir, file), ts, nil); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name  string
		setup func(dir string)
		index string
		want  string
	}{
		{"tensor not in its shard", func(dir string) { one(dir, "s1.safetensors", "a") },
			`{"weight_map":{"a":"s1.safetensors","b":"s1.safetensors"}}`, `tensor "b" is mapped to s1.safetensors, which does not hold it`},
		{"tensor in two shards", func(dir string) { one(dir, "s1.safetensors", "a"); one(dir, "s2.safetensors", "a") },
			`{"weight_map":{"a":"s1.safetensors","b":"s2.safetensors"}}`, `tensor "a" is in both s1.safetensors and s2.safetensors`},
		{"shard outside the folder", func(string) {}, `{"weight_map":{"a":"../s1.safetensors"}}`, `shard "../s1.safetensors" is not a file beside the index`},
		{"missing shard", func(string) {}, `{"weight_map":{"a":"s1.safetensors"}}`, `s1.safetensors: no such file`},
		{"no weight map", func(string) {}, `{"metadata":{}}`, `no weight_map`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			tt.setup(dir)
			path := filepath.Join(dir, SafetensorsIndexName)
			os.WriteFile(path, []byte(tt.index), 0o644)
			_, err := Open(path)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), path) {
				t.Fatalf("err = %v\nwant it to name %s and say %q", err, path, tt.want)
			}
		})
	}
}
