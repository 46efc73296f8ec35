package checkpoint

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The fixtures under testdata were written by real torch 1.13 (testdata/make_fixtures.py),
// which also recorded, in expected.json, what torch itself reports for every tensor:
// dtype, shape, stride, storage offset and size, which tensors share a storage, and the
// row-major bytes and values.

type expectedTensor struct {
	DType         string    `json:"dtype"`
	Shape         []int64   `json:"shape"`
	Stride        []int64   `json:"stride"`
	StorageOffset int64     `json:"storage_offset"`
	StorageBytes  int64     `json:"storage_bytes"`
	StorageGroup  string    `json:"storage_group"`
	Hex           string    `json:"hex"`
	Values        []float64 `json:"values"`
}

type expectedFile struct {
	WeightsKey string   `json:"weights_key"`
	Skipped    []string `json:"skipped"`
	Tensors    struct {
		Names  []string                  `json:"names"`
		ByName map[string]expectedTensor `json:"by_name"`
	} `json:"tensors"`
}

func loadExpected(t *testing.T) map[string]expectedFile {
	t.Helper()
	raw, err := os.ReadFile("testdata/expected.json")
	if err != nil {
		t.Fatal(err)
	}
	var exp map[string]expectedFile
	if err := json.Unmarshal(raw, &exp); err != nil {
		t.Fatal(err)
	}
	return exp
}

func TestTorchFixturesMatchWhatTorchReports(t *testing.T) {
	exp := loadExpected(t)
	for _, file := range []string{"state_dict.pth", "salesforce.pth", "salesforce_namespace.pth", "hf_bin/pytorch_model.bin"} {
		t.Run(file, func(t *testing.T) {
			ck, err := ReadTorch(filepath.Join("testdata", file))
			if err != nil {
				t.Fatal(err)
			}
			want := exp[file]
			if ck.Format != TorchZip || ck.WeightsKey != want.WeightsKey {
				t.Errorf("format %v, weights key %q; want torch zip, %q", ck.Format, ck.WeightsKey, want.WeightsKey)
			}
			if !slices.Equal(ck.Skipped, want.Skipped) {
				t.Errorf("skipped %q, want %q", ck.Skipped, want.Skipped)
			}
			checkRecords(t, ck, want, false)
		})
	}
}

func TestSafetensorsFixtureMatchesWhatTorchReports(t *testing.T) {
	exp := loadExpected(t)
	file := "hf_safetensors/model.safetensors"
	ck, err := ReadSafetensors(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	if ck.Format != Safetensors || ck.Metadata["format"] != "pt" {
		t.Errorf("format %v, metadata %v", ck.Format, ck.Metadata)
	}
	checkRecords(t, ck, exp[file], true)
}

// checkRecords compares every record with torch's account of it, reading the bytes at
// the record's offsets with a plain strided walk over the file.
func checkRecords(t *testing.T, ck *Checkpoint, want expectedFile, safetensors bool) {
	t.Helper()
	var names []string
	for _, r := range ck.Tensors {
		names = append(names, r.Name)
	}
	wantNames := want.Tensors.Names
	if safetensors { // data order: the fixture writer laid tensors out by name
		wantNames = slices.Sorted(slices.Values(wantNames))
	}
	if !slices.Equal(names, wantNames) {
		t.Fatalf("tensors %q,\nwant %q", names, wantNames)
	}
	keyOfGroup := map[string]string{}
	groupOfKey := map[string]string{}
	for _, r := range ck.Tensors {
		w := want.Tensors.ByName[r.Name]
		esz := int64(r.DType.Size())
		if r.DType.String() != w.DType || !slices.Equal(r.Shape, w.Shape) {
			t.Errorf("%s: %v %v, want %s %v", r.Name, r.DType, r.Shape, w.DType, w.Shape)
		}
		if !slices.Equal(r.EffectiveStrides(), w.Stride) {
			t.Errorf("%s: strides %v, want %v", r.Name, r.EffectiveStrides(), w.Stride)
		}
		if safetensors && r.Strides != nil {
			t.Errorf("%s: safetensors record has strides %v, want nil", r.Name, r.Strides)
		}
		if got := r.Offset - r.StorageOffset; got != w.StorageOffset*esz {
			t.Errorf("%s: starts %d bytes into its storage, want %d", r.Name, got, w.StorageOffset*esz)
		}
		if r.StorageBytes != w.StorageBytes {
			t.Errorf("%s: storage of %d bytes, want %d", r.Name, r.StorageBytes, w.StorageBytes)
		}
		if k, ok := keyOfGroup[w.StorageGroup]; ok && k != r.StorageKey {
			t.Errorf("%s: storage key %q, but it shares a storage with %s (%q)", r.Name, r.StorageKey, w.StorageGroup, k)
		}
		if g, ok := groupOfKey[r.StorageKey]; ok && g != w.StorageGroup {
			t.Errorf("%s: storage key %q is also %s's, which is a different storage", r.Name, r.StorageKey, g)
		}
		keyOfGroup[w.StorageGroup], groupOfKey[r.StorageKey] = r.StorageKey, w.StorageGroup
		if !safetensors && r.Offset%esz != 0 { // torch aligns storages to 64 bytes
			t.Errorf("%s: offset %d not aligned to its %d-byte elements", r.Name, r.Offset, esz)
		}

		got := stridedBytes(t, r)
		if hex.EncodeToString(got) != w.Hex {
			t.Errorf("%s: bytes %x,\nwant %s", r.Name, got, w.Hex)
		}
		if vals := decodeValues(r.DType, got); !slices.Equal(vals, w.Values) {
			t.Errorf("%s: values %v, want %v", r.Name, vals, w.Values)
		}
		f, err := os.Open(r.Path)
		if err != nil {
			t.Fatal(err)
		}
		data, err := r.ReadData(f)
		f.Close()
		if err != nil || !bytes.Equal(data, got) {
			t.Errorf("%s: ReadData = %x, %v; want %x", r.Name, data, err, got)
		}
	}
}

// stridedBytes reads the record's elements in row-major order from the whole file,
// element by element: Offset + sum(index*stride) * elemsize.
func stridedBytes(t *testing.T, r TensorRecord) []byte {
	t.Helper()
	file, err := os.ReadFile(r.Path)
	if err != nil {
		t.Fatal(err)
	}
	esz := int64(r.DType.Size())
	strides := r.EffectiveStrides()
	var out []byte
	var walk func(dim int, off int64)
	walk = func(dim int, off int64) {
		if dim == len(r.Shape) {
			out = append(out, file[off:off+esz]...)
			return
		}
		for i := int64(0); i < r.Shape[dim]; i++ {
			walk(dim+1, off+i*strides[dim]*esz)
		}
	}
	walk(0, r.Offset)
	if out == nil {
		out = []byte{}
	}
	return out
}

func decodeValues(dt DType, b []byte) []float64 {
	esz := dt.Size()
	vals := []float64{}
	for i := 0; i+esz <= len(b); i += esz {
		e := b[i : i+esz]
		var v float64
		switch dt {
		case F32:
			v = float64(math.Float32frombits(binary.LittleEndian.Uint32(e)))
		case F64:
			v = math.Float64frombits(binary.LittleEndian.Uint64(e))
		case F16:
			v = halfToFloat(binary.LittleEndian.Uint16(e))
		case BF16:
			v = float64(math.Float32frombits(uint32(binary.LittleEndian.Uint16(e)) << 16))
		case I64:
			v = float64(int64(binary.LittleEndian.Uint64(e)))
		case I32:
			v = float64(int32(binary.LittleEndian.Uint32(e)))
		case I16:
			v = float64(int16(binary.LittleEndian.Uint16(e)))
		case I8:
			v = float64(int8(e[0]))
		case U8, Bool:
			v = float64(e[0])
		}
		vals = append(vals, v)
	}
	return vals
}

func halfToFloat(h uint16) float64 {
	sign := 1.0
	if h&0x8000 != 0 {
		sign = -1
	}
	exp, frac := int(h>>10&0x1f), float64(h&0x3ff)
	switch exp {
	case 0:
		return sign * frac / 1024 * math.Pow(2, -14)
	case 31:
		if frac == 0 {
			return sign * math.Inf(1)
		}
		return math.NaN()
	}
	return sign * (1 + frac/1024) * math.Pow(2, float64(exp-15))
}

func TestOpenHuggingFaceDirectories(t *testing.T) {
	exp := loadExpected(t)
	tests := []struct {
		dir        string
		format     Format
		files      int
		wantConfig bool
		expectedAs string
	}{
		{"testdata/hf_bin", TorchZip, 1, true, "hf_bin/pytorch_model.bin"},
		{"testdata/hf_sharded_bin", TorchZip, 2, false, "hf_bin/pytorch_model.bin"},
		{"testdata/hf_safetensors", Safetensors, 1, true, "hf_safetensors/model.safetensors"},
	}
	for _, tt := range tests {
		t.Run(filepath.Base(tt.dir), func(t *testing.T) {
			ck, err := Open(tt.dir)
			if err != nil {
				t.Fatal(err)
			}
			if ck.Format != tt.format || len(ck.Files) != tt.files || (ck.ConfigPath != "") != tt.wantConfig {
				t.Errorf("format %v, files %q, config %q", ck.Format, ck.Files, ck.ConfigPath)
			}
			if tt.wantConfig && filepath.Base(ck.ConfigPath) != "config.json" {
				t.Errorf("config path %q", ck.ConfigPath)
			}
			want := exp[tt.expectedAs].Tensors
			if len(ck.Tensors) != len(want.Names) {
				t.Fatalf("%d tensors, want %d", len(ck.Tensors), len(want.Names))
			}
			for _, r := range ck.Tensors {
				if hex.EncodeToString(stridedBytes(t, r)) != want.ByName[r.Name].Hex {
					t.Errorf("%s: wrong bytes", r.Name)
				}
			}
		})
	}
}

func TestOpenSniffsFilesByContent(t *testing.T) {
	dir := t.TempDir()
	copyFile := func(src, dst string) string {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, dst)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		src, dst string
		format   Format
	}{
		{"testdata/salesforce.pth", "model_base_capfilt_large.pth", TorchZip},
		{"testdata/hf_safetensors/model.safetensors", "weights.bin", Safetensors},
		{"testdata/hf_bin/pytorch_model.bin", "weights.ckpt", TorchZip},
	} {
		ck, err := Open(copyFile(tc.src, tc.dst))
		if err != nil {
			t.Fatalf("%s: %v", tc.dst, err)
		}
		if ck.Format != tc.format {
			t.Errorf("%s: format %v, want %v", tc.dst, ck.Format, tc.format)
		}
	}
}

func TestLegacyTorchFileIsRejectedWithAClearMessage(t *testing.T) {
	for _, open := range []func(string) (*Checkpoint, error){ReadTorch, Open} {
		_, err := open("testdata/legacy.pth")
		if !errors.Is(err, ErrLegacyTorch) {
			t.Fatalf("err = %v, want ErrLegacyTorch", err)
		}
		if !strings.Contains(err.Error(), "legacy.pth") || !strings.Contains(err.Error(), "re-save with torch>=1.6") {
			t.Errorf("message %q should name the file and say how to fix it", err)
		}
	}
}

func TestOpenDirectoryWithoutWeightsSaysWhatItLookedFor(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Open(dir)
	if err == nil || !strings.Contains(err.Error(), "model.safetensors") || !strings.Contains(err.Error(), dir) {
		t.Fatalf("err = %v", err)
	}
}
