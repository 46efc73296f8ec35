package main

import (
	"errors"
	"io/fs"

	"github.com/spf13/pflag"

	"github.com/capfilt/capfilt/blip"
	"github.com/capfilt/capfilt/torch"
)

// modelOptions name a checkpoint and its tokenizer.
type modelOptions struct {
	Model     string
	Tokenizer string
}

func (o *modelOptions) AddFlags(f *pflag.FlagSet) {
	f.StringVar(&o.Model, "model", "", "model: an HF directory, a .safetensors file or an original .pth")
	addTokenizerFlag(f, &o.Tokenizer)
}

func addTokenizerFlag(f *pflag.FlagSet, dst *string) {
	f.StringVar(dst, "tokenizer", "", "vocab.txt or tokenizer.json (default: the one in the model's directory)")
}

func addAllowPartialFlag(f *pflag.FlagSet, dst *bool) {
	f.BoolVar(dst, "allow-partial", false, "load a checkpoint whose keys do not all match the model")
}

// deviceOptions say where a model runs.
type deviceOptions struct {
	Device string
	DType  string
}

func (o *deviceOptions) AddFlags(f *pflag.FlagSet) {
	f.StringVar(&o.Device, "device", "cpu", "device: cpu, cuda or cuda:N")
	f.StringVar(&o.DType, "dtype", "float32", "weights dtype: float32, or bfloat16/float16 on CUDA")
}

// resolve parses the device and dtype (whether the machine has them is
// blip.CheckDevice's question, asked when a model is loaded).
func (o *deviceOptions) resolve(a *app) (torch.Device, torch.DType, error) {
	dev, err := torch.ParseDevice(o.Device)
	if err != nil {
		return dev, 0, a.bad("device", quote(o.Device), err.Error())
	}
	dt, err := torch.ParseDType(o.DType)
	if err != nil {
		return dev, dt, a.bad("dtype", quote(o.DType), err.Error())
	}
	return dev, dt, nil
}

// loadOptions are what the commands that run one model on this machine take.
type loadOptions struct {
	modelOptions
	deviceOptions
	AllowPartial bool
}

func (o *loadOptions) AddFlags(f *pflag.FlagSet) {
	o.modelOptions.AddFlags(f)
	o.deviceOptions.AddFlags(f)
	addAllowPartialFlag(f, &o.AllowPartial)
}

// load loads the model with blip.LoadForInference. What the user named wrong (a path, a
// device, a tokenizer) is a usage error.
func (o *loadOptions) load(a *app, needTokenizer bool) (*blip.Inference, error) {
	if o.Model == "" {
		return nil, usagef("no model given (--model)")
	}
	dev, dt, err := o.resolve(a)
	if err != nil {
		return nil, err
	}
	l, err := blip.LoadForInference(o.Model, blip.InferenceOptions{Tokenizer: o.Tokenizer, SkipTokenizer: !needTokenizer,
		Device: dev, DType: dt, AllowPartial: o.AllowPartial})
	if err != nil {
		return nil, loadError(err)
	}
	for _, w := range l.Report.Warnings {
		a.log.Warn("model", "path", o.Model, "warning", w)
	}
	return l, nil
}

// loadError makes the errors that name something the user gave usage errors.
func loadError(err error) error {
	switch {
	case errors.Is(err, blip.ErrNoTokenizer):
		return usagef("%v: give --tokenizer (a vocab.txt or tokenizer.json)", err)
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, fs.ErrPermission), errors.Is(err, blip.ErrDevice):
		return usagef("%v", err)
	}
	return err
}

// addJSONFlag declares --json: print this command's output as JSON.
func addJSONFlag(f *pflag.FlagSet, dst *bool) {
	f.BoolVar(dst, "json", false, "print JSON instead of text")
	perInvocation(f, "json")
}

// addOutFlag declares --out: the file or folder this command writes.
func addOutFlag(f *pflag.FlagSet, dst *string) {
	f.StringVar(dst, "out", "", "file or folder to write")
	perInvocation(f, "out")
}
