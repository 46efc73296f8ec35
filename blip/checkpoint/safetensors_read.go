package checkpoint

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
)

// maxSafetensorsHeader is the largest header the safetensors library itself accepts.
const maxSafetensorsHeader = 100_000_000

// ReadSafetensors reads the header of a .safetensors file and describes its tensors,
// in the order of their data. Tensor data is never read.
func ReadSafetensors(path string) (*Checkpoint, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("safetensors %s: %w", path, err)
	}
	f, err := os.Open(abs)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("safetensors %s: %w", path, err)
	}
	ck, err := readSafetensors(f, fi.Size(), abs)
	if err != nil {
		return nil, fmt.Errorf("safetensors %s: %w", path, err)
	}
	return ck, nil
}

func readSafetensors(f io.ReaderAt, size int64, path string) (*Checkpoint, error) {
	var lenBuf [8]byte
	if size < 8 {
		return nil, fmt.Errorf("%d bytes is too short for a header length", size)
	}
	if err := readFull(f, lenBuf[:], 0); err != nil {
		return nil, err
	}
	n := binary.LittleEndian.Uint64(lenBuf[:])
	if n > maxSafetensorsHeader {
		return nil, fmt.Errorf("header length %d exceeds the limit of %d", n, maxSafetensorsHeader)
	}
	if n > uint64(size-8) {
		return nil, fmt.Errorf("header length %d runs past the end of the %d-byte file", n, size)
	}
	header := make([]byte, n)
	if err := readFull(f, header, 8); err != nil {
		return nil, err
	}
	dataStart := 8 + int64(n)
	entries, meta, err := parseSafetensorsHeader(header, size-dataStart)
	if err != nil {
		return nil, err
	}
	ck := &Checkpoint{Format: Safetensors, Metadata: meta, Files: []string{path}}
	for _, e := range entries {
		ck.Tensors = append(ck.Tensors, TensorRecord{
			Name:          e.name,
			DType:         e.dtype,
			Shape:         e.shape,
			Path:          path,
			Offset:        dataStart + e.begin,
			StorageKey:    path + "::" + e.name,
			StorageOffset: dataStart + e.begin,
			StorageBytes:  e.end - e.begin,
		})
	}
	return ck, nil
}

type safetensorsEntry struct {
	name       string
	dtype      DType
	shape      []int64
	begin, end int64 // relative to the start of the data
}

// parseSafetensorsHeader validates a header against the dataLen bytes that follow it and
// returns its tensors sorted by data offset, and its __metadata__.
func parseSafetensorsHeader(header []byte, dataLen int64) ([]safetensorsEntry, map[string]string, error) {
	dec := json.NewDecoder(bytes.NewReader(header))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, nil, fmt.Errorf("header is not a JSON object")
	}
	var (
		entries []safetensorsEntry
		meta    map[string]string
		seen    = map[string]bool{}
	)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, fmt.Errorf("header JSON: %w", err)
		}
		name, _ := tok.(string) // object keys are always strings
		if seen[name] {
			return nil, nil, fmt.Errorf("header names %q twice", name)
		}
		seen[name] = true
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, nil, fmt.Errorf("header JSON at %q: %w", name, err)
		}
		if name == "__metadata__" {
			if err := json.Unmarshal(raw, &meta); err != nil {
				return nil, nil, fmt.Errorf("__metadata__ must map strings to strings: %w", err)
			}
			continue
		}
		e, err := parseSafetensorsEntry(name, raw, dataLen)
		if err != nil {
			return nil, nil, fmt.Errorf("tensor %q: %w", name, err)
		}
		entries = append(entries, e)
	}
	if _, err := dec.Token(); err != nil {
		return nil, nil, fmt.Errorf("header JSON: %w", err)
	}
	// Only spaces may pad the header; anything else after the object is not safetensors.
	if rest := header[dec.InputOffset():]; len(bytes.Trim(rest, " ")) != 0 {
		return nil, nil, fmt.Errorf("header has trailing bytes after its JSON object")
	}
	slices.SortStableFunc(entries, func(a, b safetensorsEntry) int {
		if a.begin != b.begin {
			return int(sign(a.begin - b.begin))
		}
		return int(sign(a.end - b.end))
	})
	for i := 1; i < len(entries); i++ {
		if prev := entries[i-1]; entries[i].begin < prev.end {
			return nil, nil, fmt.Errorf("tensors %q [%d, %d) and %q [%d, %d) overlap",
				prev.name, prev.begin, prev.end, entries[i].name, entries[i].begin, entries[i].end)
		}
	}
	return entries, meta, nil
}

func sign(x int64) int64 {
	switch {
	case x < 0:
		return -1
	case x > 0:
		return 1
	}
	return 0
}

func parseSafetensorsEntry(name string, raw json.RawMessage, dataLen int64) (safetensorsEntry, error) {
	if name == "" {
		return safetensorsEntry{}, errors.New("empty tensor name")
	}
	var h struct {
		DType       *string   `json:"dtype"`
		Shape       *[]int64  `json:"shape"`
		DataOffsets *[]uint64 `json:"data_offsets"`
	}
	if err := json.Unmarshal(raw, &h); err != nil {
		return safetensorsEntry{}, fmt.Errorf("bad entry: %w", err)
	}
	if h.DType == nil || h.Shape == nil || h.DataOffsets == nil {
		return safetensorsEntry{}, errors.New("entry needs dtype, shape and data_offsets")
	}
	dt, err := ParseSafetensorsDType(*h.DType)
	if err != nil {
		return safetensorsEntry{}, err
	}
	numel, _, err := viewExtent(*h.Shape, nil)
	if err != nil {
		return safetensorsEntry{}, err
	}
	offs := *h.DataOffsets
	if len(offs) != 2 {
		return safetensorsEntry{}, fmt.Errorf("data_offsets has %d values, want 2", len(offs))
	}
	if offs[0] > offs[1] || offs[1] > math.MaxInt64 || int64(offs[1]) > dataLen {
		return safetensorsEntry{}, fmt.Errorf("data_offsets [%d, %d] outside the %d data bytes", offs[0], offs[1], dataLen)
	}
	begin, end := int64(offs[0]), int64(offs[1])
	if want := numel * int64(dt.Size()); end-begin != want {
		return safetensorsEntry{}, fmt.Errorf("shape %v of %s needs %d bytes, data_offsets span %d", *h.Shape, dt, want, end-begin)
	}
	return safetensorsEntry{name: name, dtype: dt, shape: cloneShape(*h.Shape), begin: begin, end: end}, nil
}
