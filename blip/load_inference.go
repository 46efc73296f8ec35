package blip

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/capfilt/capfilt/blip/tokenizer"
	"github.com/capfilt/capfilt/torch"
)

// ErrDevice says a device or dtype cannot take the weights: a CUDA device this machine
// does not have, or half-precision weights on the CPU.
var ErrDevice = errors.New("device not usable")

// InferenceOptions say how a checkpoint is loaded to run it.
type InferenceOptions struct {
	// Tokenizer is a vocab.txt / tokenizer.json (or a directory holding one); empty: the
	// one beside the checkpoint (TokenizerPath).
	Tokenizer string
	// SkipTokenizer loads no tokenizer (a caller that feeds token ids itself).
	SkipTokenizer bool
	Device        torch.Device
	DType         torch.DType
	// AllowPartial runs a checkpoint whose keys do not all match the model.
	AllowPartial bool
}

// Inference is a model ready to run, with its tokenizer and how its keys loaded.
type Inference struct {
	Model     *Model
	Tokenizer *tokenizer.Tokenizer // nil with SkipTokenizer
	Report    *LoadReport
}

// Close frees the weights.
func (l *Inference) Close() { l.Model.Close() }

// LoadForInference is the one way a command or a worker loads a checkpoint to run it: it
// checks the device and the dtype, finds the tokenizer before reading any weight (a
// missing one fails in milliseconds, not after a large load), loads strictly unless
// AllowPartial, moves the weights to the device and fits the tokenizer to the model's
// [DEC]/[ENC] ids. An error wraps fs.ErrNotExist for a missing checkpoint, ErrDevice for
// an unusable device, and ErrNoTokenizer when no tokenizer was named or found.
func LoadForInference(path string, o InferenceOptions) (*Inference, error) {
	if err := CheckDevice(o.Device, o.DType); err != nil {
		return nil, err
	}
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("model %s: %w", path, err)
	}
	tokPath := ""
	if !o.SkipTokenizer {
		var err error
		if tokPath, err = TokenizerPath(o.Tokenizer, path); err != nil {
			return nil, err
		}
	}
	m, rep, err := Load(path, LoadOptions{AllowPartial: o.AllowPartial})
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", path, err)
	}
	if err := m.To(o.Device, o.DType); err != nil {
		m.Close()
		return nil, fmt.Errorf("model %s to %v: %w", path, o.Device, err)
	}
	l := &Inference{Model: m, Report: rep}
	if !o.SkipTokenizer {
		if l.Tokenizer, err = LoadModelTokenizer(tokPath, path, m.Config); err != nil {
			m.Close()
			return nil, fmt.Errorf("tokenizer of model %s: %w", path, err)
		}
		for _, w := range TokenizerWarnings(l.Tokenizer) {
			rep.Warnings = append(rep.Warnings, "tokenizer "+tokPath+": "+w)
		}
	}
	return l, nil
}

// CheckDevice says whether weights of dtype dt can live on dev on this machine.
func CheckDevice(dev torch.Device, dt torch.DType) error {
	if dev.CUDA && (!torch.CUDAAvailable() || dev.Index >= torch.CUDADeviceCount()) {
		return fmt.Errorf("device %v is not available (capfilt version lists the devices): %w", dev, ErrDevice)
	}
	if !dt.IsFloat() {
		return fmt.Errorf("dtype %v: weights must be a float dtype: %w", dt, ErrDevice)
	}
	if dt != torch.Float32 && !dev.CUDA {
		return fmt.Errorf("dtype %v is for CUDA devices; use float32 on the CPU: %w", dt, ErrDevice)
	}
	return nil
}

// TokenizerPath is where a model's tokenizer is read from: tok when given (it must
// exist), else the checkpoint's directory when it holds a vocab.txt or tokenizer.json.
func TokenizerPath(tok, modelPath string) (string, error) {
	if tok != "" {
		if _, err := os.Stat(tok); err != nil {
			return "", fmt.Errorf("tokenizer %s: %w", tok, err)
		}
		return tok, nil
	}
	dir := modelPath
	if fi, err := os.Stat(modelPath); err == nil && !fi.IsDir() {
		dir = filepath.Dir(modelPath)
	}
	for _, name := range []string{"vocab.txt", "tokenizer.json"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			return dir, nil
		}
	}
	return "", fmt.Errorf("model %s: %w", modelPath, ErrNoTokenizer)
}
