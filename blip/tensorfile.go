package blip

import (
	"fmt"
	"sort"

	"github.com/capfilt/capfilt/blip/checkpoint"
	"github.com/capfilt/capfilt/torch"
)

// ReadTensors maps every tensor of a safetensors (or torch) file by name. The tensors are
// unscoped views of the file; the caller frees them.
func ReadTensors(path string) (map[string]*torch.Tensor, error) {
	ck, err := checkpoint.Open(path)
	if err != nil {
		return nil, err
	}
	out := map[string]*torch.Tensor{}
	mapper := newRecordMapper()
	defer mapper.close()
	for _, r := range ck.Tensors {
		t, err := mapper.view(r)
		if err != nil {
			for _, done := range out {
				done.Free()
			}
			return nil, err
		}
		out[r.Name] = t
	}
	return out, nil
}

// WriteTensors writes float32 and int64 tensors to a safetensors file, names sorted.
func WriteTensors(path string, tensors map[string]*torch.Tensor, metadata map[string]string) error {
	names := make([]string, 0, len(tensors))
	for n := range tensors {
		names = append(names, n)
	}
	sort.Strings(names)
	var tw []checkpoint.TensorToWrite
	for _, n := range names {
		t := tensors[n]
		if err := t.Err(); err != nil {
			return fmt.Errorf("%s: %w", n, err)
		}
		switch t.DType() {
		case torch.Int64:
			vals, err := t.Int64s()
			if err != nil {
				return fmt.Errorf("%s: %w", n, err)
			}
			tw = append(tw, checkpoint.TensorToWrite{Name: n, DType: checkpoint.I64, Shape: t.Shape(), Data: int64Reader(vals)})
		default:
			tw = append(tw, checkpoint.TensorToWrite{Name: n, DType: checkpoint.F32, Shape: t.Shape(), Data: &tensorData{t: t}})
		}
	}
	return checkpoint.WriteSafetensors(path, tw, metadata)
}
