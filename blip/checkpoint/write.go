package checkpoint

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// TensorToWrite is one tensor for the writers.
type TensorToWrite struct {
	Name  string
	DType DType
	Shape []int64 // empty for a scalar

	// Data yields exactly the tensor's elements, row-major, little-endian
	// (NumElements * DType.Size() bytes); bytes.NewReader wraps a slice. Each Data is
	// read once, to its end; writers may read the tensors in any order.
	Data io.Reader
}

func (t TensorToWrite) numBytes() int64 {
	n := int64(t.DType.Size())
	for _, s := range t.Shape {
		n *= s
	}
	return n
}

// checkTensors validates names, dtypes and shapes before anything is written.
func checkTensors(tensors []TensorToWrite) error {
	seen := make(map[string]bool, len(tensors))
	for _, t := range tensors {
		switch {
		case t.Name == "" || t.Name == "__metadata__":
			return fmt.Errorf("tensor name %q is not allowed", t.Name)
		case seen[t.Name]:
			return fmt.Errorf("tensor %q given twice", t.Name)
		case !t.DType.Valid():
			return fmt.Errorf("tensor %q: invalid dtype %v", t.Name, t.DType)
		case t.Data == nil:
			return fmt.Errorf("tensor %q: no data", t.Name)
		}
		if _, _, err := viewExtent(t.Shape, nil); err != nil {
			return fmt.Errorf("tensor %q: %w", t.Name, err)
		}
		seen[t.Name] = true
	}
	return nil
}

// copyTensorData copies exactly t's bytes from t.Data to w, failing if Data holds fewer
// or more, so that a wrong shape never writes a silently shifted file.
func copyTensorData(w io.Writer, t TensorToWrite) error {
	want := t.numBytes()
	n, err := io.CopyN(w, t.Data, want)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("tensor %q: data has %d bytes, shape %v of %s needs %d", t.Name, n, t.Shape, t.DType, want)
		}
		return fmt.Errorf("tensor %q: %w", t.Name, err)
	}
	var probe [1]byte
	if k, _ := io.ReadFull(t.Data, probe[:]); k > 0 {
		return fmt.Errorf("tensor %q: data has more than the %d bytes shape %v of %s needs", t.Name, want, t.Shape, t.DType)
	}
	return nil
}

// writeAtomic writes path through a temporary file in the same folder and renames it
// into place, so a reader sees either the old file or the whole new one.
func writeAtomic(path string, write func(f *os.File, w *bufio.Writer) error) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	w := bufio.NewWriterSize(tmp, 1<<20)
	if err = write(tmp, w); err != nil {
		return err
	}
	if err = w.Flush(); err != nil {
		return err
	}
	if err = tmp.Chmod(0o644); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
