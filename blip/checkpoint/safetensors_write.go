package checkpoint

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
)

// WriteSafetensors writes tensors to path as a safetensors file, atomically (temporary
// file, then rename). As the safetensors library does, the header's keys are sorted, the
// header is padded with spaces to a multiple of 8 bytes, and data is ordered by element
// size (largest first), then name, so that every tensor is aligned to its element size.
// metadata, if not empty, becomes __metadata__.
func WriteSafetensors(path string, tensors []TensorToWrite, metadata map[string]string) error {
	if err := checkTensors(tensors); err != nil {
		return fmt.Errorf("write safetensors %s: %w", path, err)
	}
	if err := writeSafetensors(path, tensors, metadata); err != nil {
		return fmt.Errorf("write safetensors %s: %w", path, err)
	}
	return nil
}

func writeSafetensors(path string, tensors []TensorToWrite, metadata map[string]string) error {
	order := slices.Clone(tensors)
	slices.SortFunc(order, func(a, b TensorToWrite) int {
		return cmp.Or(b.DType.Size()-a.DType.Size(), cmp.Compare(a.Name, b.Name))
	})
	type entry struct {
		DType       string   `json:"dtype"`
		Shape       []int64  `json:"shape"`
		DataOffsets [2]int64 `json:"data_offsets"`
	}
	header := map[string]any{}
	if len(metadata) > 0 {
		header["__metadata__"] = metadata
	}
	var off int64
	for _, t := range order {
		n := t.numBytes()
		header[t.Name] = entry{t.DType.SafetensorsName(), cloneShape(t.Shape), [2]int64{off, off + n}}
		off += n
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf) // maps encode with sorted keys
	enc.SetEscapeHTML(false)
	if err := enc.Encode(header); err != nil {
		return err
	}
	hdr := bytes.TrimRight(buf.Bytes(), "\n")
	if pad := (8 - len(hdr)%8) % 8; pad > 0 {
		hdr = append(hdr, bytes.Repeat([]byte(" "), pad)...)
	}
	return writeAtomic(path, func(_ *os.File, w *bufio.Writer) error {
		if err := binary.Write(w, binary.LittleEndian, uint64(len(hdr))); err != nil {
			return err
		}
		if _, err := w.Write(hdr); err != nil {
			return err
		}
		for _, t := range order {
			if err := copyTensorData(w, t); err != nil {
				return err
			}
		}
		return nil
	})
}

// SafetensorsIndexName is the index a sharded safetensors checkpoint is opened by.
const SafetensorsIndexName = "model.safetensors.index.json"

// WriteSafetensorsSharded writes tensors into dir the way Hugging Face saves a sharded
// model: tensors, in the given order, are packed into shards of at most maxShardBytes
// of tensor data (a larger tensor gets a shard of its own), named
// model-00001-of-0000N.safetensors, with model.safetensors.index.json mapping each
// tensor to its shard. If everything fits in one shard it writes model.safetensors and
// no index. Every file is written atomically, the index last. It returns the files
// written.
func WriteSafetensorsSharded(dir string, tensors []TensorToWrite, metadata map[string]string, maxShardBytes int64) ([]string, error) {
	if maxShardBytes <= 0 {
		return nil, fmt.Errorf("write sharded safetensors %s: max shard size %d is not positive", dir, maxShardBytes)
	}
	if err := checkTensors(tensors); err != nil {
		return nil, fmt.Errorf("write sharded safetensors %s: %w", dir, err)
	}
	var (
		shards [][]TensorToWrite
		size   int64
		total  int64
	)
	for _, t := range tensors {
		n := t.numBytes()
		if len(shards) == 0 || (size+n > maxShardBytes && size > 0) {
			shards = append(shards, nil)
			size = 0
		}
		shards[len(shards)-1] = append(shards[len(shards)-1], t)
		size += n
		total += n
	}
	if len(shards) <= 1 {
		p := filepath.Join(dir, "model.safetensors")
		return []string{p}, WriteSafetensors(p, tensors, metadata)
	}
	var files []string
	weightMap := map[string]string{}
	for i, shard := range shards {
		name := fmt.Sprintf("model-%05d-of-%05d.safetensors", i+1, len(shards))
		p := filepath.Join(dir, name)
		if err := WriteSafetensors(p, shard, metadata); err != nil {
			return files, err
		}
		files = append(files, p)
		for _, t := range shard {
			weightMap[t.Name] = name
		}
	}
	index := map[string]any{
		"metadata":   map[string]any{"total_size": total},
		"weight_map": weightMap,
	}
	raw, err := json.MarshalIndent(index, "", "  ")
	if err != nil {
		return files, fmt.Errorf("write sharded safetensors %s: %w", dir, err)
	}
	p := filepath.Join(dir, SafetensorsIndexName)
	err = writeAtomic(p, func(_ *os.File, w *bufio.Writer) error {
		_, err := w.Write(append(raw, '\n'))
		return err
	})
	if err != nil {
		return files, fmt.Errorf("write sharded safetensors index %s: %w", p, err)
	}
	return append(files, p), nil
}
