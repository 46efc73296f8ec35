// Package checkpoint reads and writes model weight files at the format level: it never
// builds tensors, it says exactly where each tensor's bytes lie (file, absolute offset,
// dtype, shape, strides) so the loader can map them, and it writes safetensors and
// torch.save-compatible files.
//
// It reads what BLIP checkpoints come as: Hugging Face directories (model.safetensors,
// sharded model.safetensors.index.json, pytorch_model.bin, sharded
// pytorch_model.bin.index.json) and the original Salesforce .pth training dumps.
package checkpoint

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Format is the container a checkpoint's bytes are in.
type Format int

const (
	Safetensors Format = iota + 1
	TorchZip           // torch.save zip archive (torch >= 1.6): .pth, pytorch_model.bin
)

func (f Format) String() string {
	switch f {
	case Safetensors:
		return "safetensors"
	case TorchZip:
		return "torch zip"
	}
	return fmt.Sprintf("Format(%d)", int(f))
}

// Checkpoint is the description of every weight tensor in a checkpoint, in file order
// (shard by shard for sharded checkpoints).
type Checkpoint struct {
	Format  Format
	Tensors []TensorRecord

	// Metadata is the safetensors __metadata__ (merged over shards, the first shard
	// winning on conflicts); nil for torch files.
	Metadata map[string]string

	// WeightsKey is the key of the top-level dict the weights were under in a torch file
	// ("model" for Salesforce training dumps), or "" when the file is a bare state dict.
	WeightsKey string

	// Skipped lists entries of a torch state dict that are not tensors ("name (type)");
	// they are reported, not loaded.
	Skipped []string

	// ConfigPath is the config.json beside the weights when Open was given a directory
	// that has one.
	ConfigPath string

	// Files are the files the records point into.
	Files []string
}

// Tensor returns the record named name.
func (c *Checkpoint) Tensor(name string) (TensorRecord, bool) {
	for _, r := range c.Tensors {
		if r.Name == name {
			return r, true
		}
	}
	return TensorRecord{}, false
}

// hfWeightFiles are the weight files of a Hugging Face model directory, in the order
// transformers prefers them.
var hfWeightFiles = []string{
	"model.safetensors",
	"model.safetensors.index.json",
	"pytorch_model.bin",
	"pytorch_model.bin.index.json",
}

// Open reads the checkpoint at path: a Hugging Face model directory, a sharded index
// (*.index.json), a .safetensors file, or a torch.save file (.pth, .bin, ...), the last
// two told apart by their first bytes.
func Open(path string) (*Checkpoint, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	if fi.IsDir() {
		return openDir(path)
	}
	if strings.HasSuffix(path, ".index.json") {
		return ReadIndex(path)
	}
	if strings.HasSuffix(path, ".safetensors") {
		return ReadSafetensors(path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	head := make([]byte, 9)
	n, _ := io.ReadFull(f, head)
	f.Close()
	// A safetensors file starts with its header length and then the header's '{'; a
	// torch zip with "PK", a legacy torch file with a pickle PROTO opcode.
	if n == 9 && head[8] == '{' {
		return ReadSafetensors(path)
	}
	return ReadTorch(path)
}

func openDir(dir string) (*Checkpoint, error) {
	for _, name := range hfWeightFiles {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err != nil {
			continue
		}
		var ck *Checkpoint
		var err error
		switch {
		case strings.HasSuffix(name, ".index.json"):
			ck, err = ReadIndex(p)
		case name == "model.safetensors":
			ck, err = ReadSafetensors(p)
		default:
			ck, err = ReadTorch(p)
		}
		if err != nil {
			return nil, err
		}
		if cfg := filepath.Join(dir, "config.json"); fileExists(cfg) {
			if ck.ConfigPath, err = filepath.Abs(cfg); err != nil {
				return nil, fmt.Errorf("checkpoint %s: %w", dir, err)
			}
		}
		return ck, nil
	}
	return nil, fmt.Errorf("checkpoint %s: no weights: looked for %s", dir, strings.Join(hfWeightFiles, ", "))
}

func fileExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

// maxIndexBytes bounds a shard index; BLIP-large's has ~1,000 entries, ~100 KB.
const maxIndexBytes = 64 << 20

// ReadIndex reads a sharded Hugging Face checkpoint from its index
// (model.safetensors.index.json or pytorch_model.bin.index.json): every shard its
// weight_map names, relative to the index's folder. A name the index maps to a shard
// that lacks it, or a tensor present in two shards, is an error.
func ReadIndex(indexPath string) (*Checkpoint, error) {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("checkpoint index %s: "+format, append([]any{indexPath}, args...)...)
	}
	f, err := os.Open(indexPath)
	if err != nil {
		return nil, fmt.Errorf("checkpoint index: %w", err)
	}
	raw, err := io.ReadAll(io.LimitReader(f, maxIndexBytes+1))
	f.Close()
	if err != nil {
		return nil, fail("%w", err)
	}
	if len(raw) > maxIndexBytes {
		return nil, fail("larger than %d bytes", maxIndexBytes)
	}
	var index struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(raw, &index); err != nil {
		return nil, fail("%w", err)
	}
	if len(index.WeightMap) == 0 {
		return nil, fail("no weight_map")
	}
	names := slices.Sorted(maps.Keys(index.WeightMap))
	var shards []string
	for _, name := range names {
		shard := index.WeightMap[name]
		if !filepath.IsLocal(shard) {
			return nil, fail("tensor %q: shard %q is not a file beside the index", name, shard)
		}
		if !slices.Contains(shards, shard) {
			shards = append(shards, shard)
		}
	}
	slices.Sort(shards)

	ck := &Checkpoint{}
	seen := map[string]string{} // tensor -> shard
	dir := filepath.Dir(indexPath)
	for _, shard := range shards {
		p := filepath.Join(dir, shard)
		var part *Checkpoint
		if strings.HasSuffix(shard, ".safetensors") {
			part, err = ReadSafetensors(p)
		} else {
			part, err = ReadTorch(p)
		}
		if err != nil {
			return nil, fail("%w", err)
		}
		if ck.Format != 0 && ck.Format != part.Format {
			return nil, fail("shards mix %s and %s", ck.Format, part.Format)
		}
		ck.Format = part.Format
		for _, r := range part.Tensors {
			if other, dup := seen[r.Name]; dup {
				return nil, fail("tensor %q is in both %s and %s", r.Name, other, shard)
			}
			seen[r.Name] = shard
		}
		ck.Tensors = append(ck.Tensors, part.Tensors...)
		ck.Files = append(ck.Files, part.Files...)
		ck.Skipped = append(ck.Skipped, part.Skipped...)
		if ck.WeightsKey == "" {
			ck.WeightsKey = part.WeightsKey
		}
		for k, v := range part.Metadata {
			if ck.Metadata == nil {
				ck.Metadata = map[string]string{}
			}
			if _, ok := ck.Metadata[k]; !ok {
				ck.Metadata[k] = v
			}
		}
	}
	for _, name := range names {
		if shard := index.WeightMap[name]; seen[name] != shard {
			return nil, fail("tensor %q is mapped to %s, which does not hold it", name, shard)
		}
	}
	return ck, nil
}
