package blip

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"unsafe"

	"github.com/capfilt/capfilt/blip/tokenizer"

	"github.com/capfilt/capfilt/blip/checkpoint"
	"github.com/capfilt/capfilt/torch"
)

// tensorData streams one parameter's float32 values, copied out of libtorch only when
// the writer reaches it, so saving holds one tensor at a time in Go memory.
type tensorData struct {
	t   *torch.Tensor
	buf []byte
	off int
	err error
}

func (d *tensorData) Read(p []byte) (int, error) {
	if d.buf == nil && d.err == nil {
		host := d.t.To(torch.CPU, torch.Float32)
		vals, err := host.Float32s()
		host.Free()
		if err != nil {
			d.err = err
		} else {
			d.buf = unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(vals))), len(vals)*4)
			if d.buf == nil {
				d.buf = []byte{}
			}
		}
	}
	if d.err != nil {
		return 0, d.err
	}
	if d.off >= len(d.buf) {
		d.buf = d.buf[:0:0]
		return 0, io.EOF
	}
	n := copy(p, d.buf[d.off:])
	d.off += n
	return n, nil
}

func (m *Model) tensorsToWrite(rename func(string) string) ([]checkpoint.TensorToWrite, error) {
	var out []checkpoint.TensorToWrite
	add := func(name string, t *torch.Tensor) error {
		if t == nil {
			return fmt.Errorf("save: parameter %s has no value", name)
		}
		if err := t.Err(); err != nil {
			return fmt.Errorf("save: parameter %s: %w", name, err)
		}
		out = append(out, checkpoint.TensorToWrite{Name: rename(name), DType: checkpoint.F32, Shape: t.Shape(), Data: &tensorData{t: t}})
		return nil
	}
	for _, p := range m.ps.list {
		if err := add(p.Name, p.Tensor()); err != nil {
			return nil, err
		}
	}
	// Shared tensors are written under every name, as BLIP's own checkpoints hold them.
	aliases := make([]string, 0, len(m.ps.aliases))
	for a := range m.ps.aliases {
		aliases = append(aliases, a)
	}
	sort.Strings(aliases)
	for _, alias := range aliases {
		p, _ := m.ps.get(alias)
		if err := add(alias, p.Tensor()); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// SaveHF writes an HF-layout directory: config.json, model.safetensors and, when tok is
// given, vocab.txt. Load reads it back.
func (m *Model) SaveHF(dir string, tok *tokenizer.Tokenizer) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	cfg, err := m.Config.HFConfigJSON()
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), cfg, 0o644); err != nil {
		return err
	}
	tensors, err := m.tensorsToWrite(func(s string) string { return s })
	if err != nil {
		return err
	}
	meta := map[string]string{"format": "pt", "capfilt.model": "blip"}
	if m.SharedText {
		meta["capfilt.shared_text"] = "true"
	}
	if err := checkpoint.WriteSafetensors(filepath.Join(dir, "model.safetensors"), tensors, meta); err != nil {
		return err
	}
	if tok != nil {
		return tok.WriteVocab(dir)
	}
	return nil
}

// SaveOriginal writes a Salesforce-style torch.save file, {"model": state dict} under
// the original names, that torch.load and BLIP's own code read; config.json is written
// beside it because head counts are not in the tensors.
func (m *Model) SaveOriginal(path string) error {
	if filepath.Ext(path) != ".pth" {
		return errors.New("save: an original checkpoint is a .pth file")
	}
	tensors, err := m.tensorsToWrite(HFToOriginal)
	if err != nil {
		return err
	}
	if err := checkpoint.WriteTorchZip(path, tensors, true); err != nil {
		return err
	}
	cfg, err := m.Config.HFConfigJSON()
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(filepath.Dir(path), "config.json"), cfg, 0o644)
}

func int64Reader(vals []int64) io.Reader {
	b := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(vals))), len(vals)*8)
	return bytes.NewReader(b)
}
