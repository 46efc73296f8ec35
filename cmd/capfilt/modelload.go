package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/capfilt/capfilt/blip/tokenizer"

	"github.com/spf13/cobra"

	"github.com/capfilt/capfilt/blip"
	"github.com/capfilt/capfilt/torch"
)

// addModelFlags adds the settings every command that loads a model shares.
func addModelFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.String("model", "", "model: an HF directory, a .safetensors file or an original .pth")
	f.String("tokenizer", "", "vocab.txt or tokenizer.json (default: the one in the model's directory)")
	f.String("device", "cpu", "device: cpu, cuda or cuda:N")
	f.String("dtype", "float32", "weights dtype: float32, or bfloat16/float16 on CUDA")
	f.Bool("allow-partial", false, "load a checkpoint whose keys do not all match the model")
}

// loadedModel is a model ready to run, with its tokenizer.
type loadedModel struct {
	model  *blip.Model
	tok    *tokenizer.Tokenizer
	report *blip.LoadReport
	device torch.Device
}

func (l *loadedModel) Close() { l.model.Close() }

// loadModel reads the model settings, loads the checkpoint and moves it to the device.
// Problems with what the user named (paths, devices) are usage errors.
func (a *app) loadModel(needTokenizer bool) (*loadedModel, error) {
	path := a.v.GetString("model")
	if path == "" {
		return nil, usagef("no model given (--model)")
	}
	if _, err := os.Stat(path); err != nil {
		return nil, usagef("model %s: %v", path, errors.Unwrap(err))
	}
	dev, err := torch.ParseDevice(a.v.GetString("device"))
	if err != nil {
		return nil, usagef("%v", err)
	}
	if dev.CUDA && (!torch.CUDAAvailable() || dev.Index >= torch.CUDADeviceCount()) {
		return nil, usagef("device %v is not available (capfilt version lists the devices)", dev)
	}
	dt, err := torch.ParseDType(a.v.GetString("dtype"))
	if err != nil {
		return nil, usagef("%v", err)
	}
	m, rep, err := blip.Load(path, blip.LoadOptions{AllowPartial: a.v.GetBool("allow-partial")})
	if err != nil {
		return nil, fmt.Errorf("load model: %w", err)
	}
	for _, w := range rep.Warnings {
		a.log.Warn("model", "path", path, "warning", w)
	}
	if err := m.To(dev, dt); err != nil {
		m.Close()
		return nil, err
	}
	l := &loadedModel{model: m, report: rep, device: dev}
	if needTokenizer {
		if l.tok, err = a.loadTokenizer(path, m.Config); err != nil {
			m.Close()
			return nil, err
		}
	}
	return l, nil
}

// loadTokenizer reads --tokenizer, or the vocabulary beside the model (see
// blip.LoadModelTokenizer). A missing or unreadable one is a usage error.
func (a *app) loadTokenizer(modelPath string, cfg blip.Config) (*tokenizer.Tokenizer, error) {
	path := a.v.GetString("tokenizer")
	tok, err := blip.LoadModelTokenizer(path, modelPath, cfg)
	switch {
	case errors.Is(err, blip.ErrNoTokenizer):
		return nil, usagef("%v: give --tokenizer (a vocab.txt or tokenizer.json)", err)
	case err != nil:
		return nil, usagef("%v", err)
	}
	return tok, nil
}
