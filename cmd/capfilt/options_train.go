package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/capfilt/capfilt/blip"
	"github.com/capfilt/capfilt/torch"
	"github.com/capfilt/capfilt/trainer"
)

// trainOptions are the settings of `capfilt train pretrain|caption|retrieval`. Numbers
// whose recipe differs by task default to 0 (or -1): "the task's", as the paper sets them.
type trainOptions struct {
	Data      []string
	Init      string
	Vision    string
	Text      string
	Tokenizer string
	Out       string
	Resume    bool

	Epochs      int
	BatchSize   int
	LR          float64
	MinLR       float64
	WarmupLR    float64
	WarmupSteps int
	DecayRate   float64
	WeightDecay float64
	QueueSize   int
	Alpha       float64
	Momentum    float64
	Dropout     float64
	DropPath    float64
	Augment     bool
	MinScale    float64
	AllRank     bool
	ImageSize   int
	CaptionSrc  string
	MaxWords    int
	Seed        uint64
	Workers     int
	Shuffle     int
	LogEvery    int
	SaveEvery   int
	MaxSteps    int

	NProcPerNode int
	DistTimeout  time.Duration

	device deviceOptions
	store  storeOptions
}

func (o *trainOptions) AddFlags(f *pflag.FlagSet) {
	addDataFlag(f, &o.Data)
	f.StringVar(&o.Init, "init", "", "weights to start from: a BLIP checkpoint (directory, .safetensors, .pth), or for a fresh model a preset (tiny, base, large) or a config.json")
	f.StringVar(&o.Vision, "init-vision", "", "fresh model: a timm/DeiT ViT checkpoint for the vision tower (deit_base_patch16_224 for ViT-B)")
	f.StringVar(&o.Text, "init-text", "", "fresh model: a bert-base-uncased HF directory for the text transformer")
	addTokenizerFlag(f, &o.Tokenizer)
	addOutFlag(f, &o.Out)
	f.BoolVar(&o.Resume, "resume", false, "continue the run in --out from its last checkpoint (same settings, data and world size)")
	perInvocation(f, "init", "init-vision", "init-text", "resume")

	f.IntVar(&o.Epochs, "epochs", 0, "epochs (0: the task's: pretrain 20, caption 5, retrieval 6)")
	f.IntVar(&o.BatchSize, "train-batch-size", trainer.DefaultBatchSize, "training images per step and process (the global batch is this × processes)")
	f.Float64Var(&o.LR, "lr", 0, "peak learning rate (0: the task's: pretrain 3e-4, caption and retrieval 1e-5)")
	f.Float64Var(&o.MinLR, "min-lr", -1, "learning-rate floor (-1: the task's: pretrain 1e-6 under the step decay, finetunes 0 at the cosine's end)")
	f.Float64Var(&o.WarmupLR, "warmup-lr", trainer.DefaultWarmupLR, "pretrain: learning rate the warm-up starts from")
	f.IntVar(&o.WarmupSteps, "warmup-steps", trainer.DefaultWarmupSteps, "pretrain: steps of epoch 0 the linear warm-up takes (0: none)")
	f.Float64Var(&o.DecayRate, "lr-decay-rate", trainer.DefaultDecayRate, "pretrain: learning rate × this per epoch (the paper's 0.85; BLIP's yaml has 0.9)")
	f.Float64Var(&o.WeightDecay, "weight-decay", blip.WeightDecay, "AdamW weight decay, on every parameter")
	f.IntVar(&o.QueueSize, "queue-size", blip.DefaultQueueSize, "pretrain, retrieval: ITC feature-queue length (divisible by the global batch)")
	f.Float64Var(&o.Alpha, "alpha", trainer.DefaultAlpha, "pretrain, retrieval: momentum-distillation weight (ramped up over the first epochs)")
	f.Float64Var(&o.Momentum, "momentum", blip.MomentumRate, "pretrain, retrieval: momentum-model rate m of θm ← m·θm + (1−m)·θ")
	f.Float64Var(&o.Dropout, "dropout", trainer.DefaultDropout, "text-transformer dropout while training (BERT's 0.1; 0: off)")
	f.Float64Var(&o.DropPath, "drop-path", -1, "ViT stochastic depth (-1: the model config's; BLIP: 0 for ViT-B, 0.1 for ViT-L)")
	f.BoolVar(&o.Augment, "augment", true, "BLIP's train transform: random resized crop, horizontal flip, RandAugment (false: the inference resize)")
	f.Float64Var(&o.MinScale, "min-scale", 0, "smallest crop area share of the random resized crop (0: the task's: pretrain 0.2, finetunes 0.5)")
	f.BoolVar(&o.AllRank, "negative-all-rank", true, "retrieval: draw ITM hard negatives from every process's batch (BLIP: COCO true, Flickr false)")
	f.IntVar(&o.ImageSize, "train-image-size", 0, "training resolution (0: 224 pretraining and 384 finetuning for ViT-B/L, else the model config's)")
	f.StringVar(&o.CaptionSrc, "caption-source", "all", "cleaned Parquet data: which accepted captions to train on: web, synthetic or all")
	f.IntVar(&o.MaxWords, "max-words", trainer.DefaultMaxWords, "pre_caption's word limit for training captions")
	f.Uint64Var(&o.Seed, "train-seed", 0, "seed of the initial weights and queues, the data order, augmentation, dropout and hard negatives")
	addDecodeWorkersFlag(f, &o.Workers)
	f.IntVar(&o.Shuffle, "shuffle-buffer", trainer.DefaultShuffleBuffer, "training samples the shuffle draws from")
	f.IntVar(&o.LogEvery, "log-every", trainer.DefaultLogEvery, "steps between records of train_log.jsonl")
	f.IntVar(&o.SaveEvery, "save-every", 1000, "steps between checkpoints (0: at epoch ends only; every epoch end has one)")
	f.IntVar(&o.MaxSteps, "max-steps", 0, "stop after this many steps in all (0: run every epoch)")
	f.IntVar(&o.NProcPerNode, "nproc-per-node", 1, "data-parallel processes to start on this machine (each reads RANK etc. as torchrun sets them)")
	f.DurationVar(&o.DistTimeout, "dist-timeout", torch.DefaultDistTimeout, "data-parallel: how long a process waits for the others at a rendezvous or collective")
	o.device.AddFlags(f)
	o.store.AddFlags(f)
}

// addDataFlag declares --data: the sources a command reads.
func addDataFlag(f *pflag.FlagSet, dst *[]string) {
	f.StringSliceVar(dst, "data", nil, "data sources, comma-separated or repeated: cleaned:PATTERN (capfilt run's Parquet), web:PATTERN (raw shards), coco:FILE.json[@IMAGE_ROOT]")
	perInvocation(f, "data")
}

// config turns the options into a trainer.Config, each bad value named by its flag and
// where it came from.
func (o *trainOptions) config(a *app, task trainer.Task) (trainer.Config, error) {
	c := trainer.DefaultConfig(task)
	if len(o.Data) == 0 {
		return c, usagef("train %s: give --data (cleaned:PATTERN, web:PATTERN or coco:FILE.json[@IMAGE_ROOT])", task)
	}
	for _, d := range o.Data {
		src, err := trainer.ParseDataSource(d)
		if err != nil {
			return c, usagef("data: %v", err)
		}
		c.Data = append(c.Data, src)
	}
	if o.Out == "" {
		return c, usagef("train %s: give --out DIR (the trained model and its checkpoints go there)", task)
	}
	c.Out = o.Out
	init, err := o.init(a)
	if err != nil {
		return c, err
	}
	c.Init, c.Resume = init, o.Resume
	if o.Epochs != 0 {
		c.Epochs = o.Epochs
	}
	if o.LR != 0 {
		c.LR = o.LR
	}
	if o.MinLR != -1 {
		c.MinLR = o.MinLR
	}
	if o.MinScale != 0 {
		c.MinScale = o.MinScale
	}
	c.BatchSize, c.WarmupLR, c.WarmupSteps, c.DecayRate, c.WeightDecay = o.BatchSize, o.WarmupLR, o.WarmupSteps, o.DecayRate, o.WeightDecay
	c.QueueSize, c.Alpha, c.Momentum, c.Dropout, c.DropPath = o.QueueSize, o.Alpha, o.Momentum, o.Dropout, o.DropPath
	c.Augment, c.NegativeAllRank, c.MaxWords, c.Seed = o.Augment, o.AllRank, o.MaxWords, o.Seed
	c.Workers, c.ShuffleBuffer, c.LogEvery, c.SaveEvery, c.MaxSteps = o.Workers, o.Shuffle, o.LogEvery, o.SaveEvery, o.MaxSteps
	c.Init.ImageSize = o.ImageSize
	sel, err := trainer.ParseCaptionSelector(o.CaptionSrc)
	if err != nil {
		return c, a.bad("caption-source", quote(o.CaptionSrc), "want web, synthetic or all")
	}
	c.Captions = sel
	dev, dt, err := o.device.resolve(a)
	if err != nil {
		return c, err
	}
	if dt != torch.Float32 {
		return c, a.bad("dtype", quote(o.device.DType), "training runs in float32")
	}
	c.Device = dev
	c.Store = o.store.open()
	return c, a.trainProblems(c.Validate())
}

// init reads --init: a checkpoint path, a preset name, or a config.json.
func (o *trainOptions) init(a *app) (trainer.Init, error) {
	in := trainer.Init{Vocab: o.Tokenizer, Vision: o.Vision, Text: o.Text}
	if o.Init == "" {
		if o.Resume {
			return in, nil
		}
		return in, usagef("give --init: a BLIP checkpoint, or a preset (tiny, base, large) or config.json for a fresh model")
	}
	if _, err := blip.Preset(o.Init); err == nil {
		if _, statErr := os.Stat(o.Init); statErr != nil {
			in.Preset = o.Init
			return in, nil
		}
	}
	if _, err := os.Stat(o.Init); err != nil {
		return in, usagef("init %s: %v (want a BLIP checkpoint, a preset: tiny, base, large, or a config.json)", o.Init, err)
	}
	if strings.EqualFold(filepath.Ext(o.Init), ".json") {
		in.ModelConfig = o.Init
	} else {
		in.From = o.Init
	}
	return in, nil
}

// trainFlags maps a trainer.Config field's name to its flag.
var trainFlags = map[string]string{
	"data": "data", "out": "out", "init": "init", "init_preset": "init", "init_vocab": "tokenizer",
	"init_vision": "init-vision", "image_size": "train-image-size", "epochs": "epochs", "batch_size": "train-batch-size",
	"lr": "lr", "min_lr": "min-lr", "warmup_lr": "warmup-lr", "warmup_steps": "warmup-steps", "lr_decay_rate": "lr-decay-rate",
	"weight_decay": "weight-decay", "queue_size": "queue-size", "alpha": "alpha", "momentum": "momentum",
	"dropout": "dropout", "drop_path": "drop-path", "min_scale": "min-scale", "workers": "decode-workers",
	"log_every": "log-every", "save_every": "save-every", "max_steps": "max-steps", "captions": "caption-source",
	"max_words": "max-words",
}

// trainProblems names the flag and the source of each field trainer.Config.Validate
// refused.
func (a *app) trainProblems(err error) error {
	if err == nil {
		return nil
	}
	ps, ok := err.(trainer.Problems)
	if !ok {
		return usagef("%v", err)
	}
	lines := make([]string, len(ps))
	for i, p := range ps {
		name := p.Field
		if flag, ok := trainFlags[p.Field]; ok {
			name = flag
		}
		lines[i] = fmt.Sprintf("%s %s (%s): %s", name, p.Value, a.from(name), p.Reason)
	}
	return usagef("%s", strings.Join(lines, "; "))
}
