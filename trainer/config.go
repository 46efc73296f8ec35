package trainer

import (
	"fmt"
	"math"
	"strings"

	"github.com/capfilt/capfilt/blip"
	"github.com/capfilt/capfilt/imageproc"
	"github.com/capfilt/capfilt/shards"
	"github.com/capfilt/capfilt/torch"
)

// Task is what a training run optimises (blip-spec §6–§7).
type Task string

const (
	// TaskPretrain is BLIP's pretraining: ITC with momentum distillation and queues, ITM
	// with hard negatives, LM; the decoder shares the encoder's weights but self-attention.
	TaskPretrain Task = "pretrain"
	// TaskCaption is the captioner's finetune: LM only, on the vision model and the
	// decoder (BLIP_Decoder), the prompt left out of the loss.
	TaskCaption Task = "caption"
	// TaskRetrieval is the filter's finetune: ITC with same-image positives and ITM, on
	// the vision model, the encoder, the projections and the ITM head (BLIP_Retrieval).
	TaskRetrieval Task = "retrieval"
)

// ParseTask reads pretrain, caption or retrieval.
func ParseTask(s string) (Task, error) {
	switch t := Task(s); t {
	case TaskPretrain, TaskCaption, TaskRetrieval:
		return t, nil
	}
	return "", fmt.Errorf("task %q: want pretrain, caption or retrieval", s)
}

// parts are the modules the task's model has.
func (t Task) parts() blip.Parts {
	switch t {
	case TaskCaption:
		return blip.Parts{Vision: true, TextDecoder: true}
	case TaskRetrieval:
		return blip.Parts{Vision: true, TextEncoder: true, ITC: true, ITM: true, Temp: true}
	}
	return blip.AllParts()
}

// textMode is how the task tokenises its captions.
func (t Task) textMode() TextMode {
	switch t {
	case TaskCaption:
		return TextCaption
	case TaskRetrieval:
		return TextRetrieval
	}
	return TextPretrain
}

// Init says where a run's first weights come from: a BLIP checkpoint (From), or a fresh
// model of a preset or a config file, randomly initialised and optionally given the
// paper's pretrained towers (a DeiT ViT, bert-base-uncased).
type Init struct {
	// From is a BLIP checkpoint (HF directory, .safetensors, original .pth); the
	// task's parts are taken from it (a pretrained checkpoint has them all).
	From string
	// Preset ("tiny", "base", "large") or ModelConfig (an HF config.json) make a fresh model.
	Preset      string
	ModelConfig string
	// Vocab is the vocab.txt or tokenizer.json; empty: the one beside From. A fresh
	// model needs it (a tiny preset without one gets the tiny test vocabulary's size
	// only if the file says so: there is no default vocabulary).
	Vocab string
	// Vision (a timm/DeiT ViT checkpoint) and Text (a bert-base-uncased HF directory)
	// initialise a fresh model's towers, as BLIP's pretraining starts.
	Vision, Text string
	// ImageSize is the training resolution. 0: for ViT-B/16 and ViT-L/16 models the
	// paper's (224 pretraining, 384 finetuning); for any other model its config's own.
	// A checkpoint at another size has its position embeddings interpolated on load.
	ImageSize int
}

// Config is one training run. DefaultConfig(task) fills it with the paper's recipe;
// Validate names every field that is wrong.
type Config struct {
	Task Task
	// Data are the --data sources, mixed (ParseDataSource).
	Data []DataSource
	// Store reads the data (nil: local files and S3 with the standard AWS chain).
	Store shards.Store
	// Captions chooses the cleaned Parquet captions a sample may draw (default all).
	Captions CaptionSelector
	// MaxWords is pre_caption's max_words (default 30).
	MaxWords int
	// Shard configures raw web shards (Parquet columns, member limits).
	Shard shards.ShardOptions
	// Out is the run's folder: the model in the HF layout at its root (what `capfilt run
	// --model` reads) and train_state/ beside it.
	Out  string
	Init Init

	Epochs int
	// BatchSize is per process; the global batch is BatchSize × world size.
	BatchSize int
	// LR is the peak learning rate lr0. Pretraining warms up from WarmupLR over the
	// first WarmupSteps steps of epoch 0, then each epoch uses max(MinLR,
	// LR·DecayRate^epoch); the finetunes use cosine from LR to MinLR over the epochs.
	LR, MinLR, WarmupLR float64
	WarmupSteps         int
	DecayRate           float64
	WeightDecay         float64
	// QueueSize is the feature queues' length (ITC); it must be divisible by the global batch.
	QueueSize int
	// Alpha is the distillation weight, ramped (pretraining over 2 epochs, retrieval over 1).
	Alpha float64
	// Momentum is m of the momentum model's θm ← m·θm + (1−m)·θ.
	Momentum float64
	// Dropout is the text transformer's dropout in training (BERT's 0.1); 0 trains in
	// eval math (and with DropPath 0, no step draws from the dropout generator).
	Dropout float64
	// DropPath is the ViT's stochastic depth (the model's config's when negative).
	DropPath float64
	// Augment applies BLIP's train transform (random resized crop, flip, RandAugment);
	// off, images get the inference resize (the synthetic world's captions name left and
	// right, which a flip falsifies).
	Augment bool
	// MinScale is the random crop's smallest area share (0.2 pretraining, 0.5 finetunes).
	MinScale float64
	// NegativeAllRank draws retrieval's hard negatives from every process's batch (COCO
	// true, Flickr false).
	NegativeAllRank bool
	// Seed fixes every draw: the model's and the queues' initial values, hard negatives,
	// dropout and the data order.
	Seed uint64
	// Workers decode and augment images (0: GOMAXPROCS); ShuffleBuffer is the data
	// shuffle's sample buffer (0: DefaultShuffleBuffer).
	Workers       int
	ShuffleBuffer int
	Device        torch.Device
	// LogEvery is the number of steps between logged records (train_log.jsonl,
	// Result.History); SaveEvery the steps between checkpoints (0: at epoch ends only).
	LogEvery, SaveEvery int
	// Resume continues the run in Out from its last checkpoint; the settings, the data
	// and the world size must be those it was made with.
	Resume bool
	// MaxSteps stops after this many steps in all (0: every epoch): short runs in tests
	// and demos. A resumed run counts the steps before the checkpoint.
	MaxSteps int
	// Dist is this process's group in a data-parallel run; nil is one process.
	Dist *torch.ProcessGroup
}

// Recipe values of blip-spec §6–§7.
const (
	DefaultBatchSize   = 32
	DefaultWarmupSteps = 3000
	DefaultWarmupLR    = 1e-6
	// DefaultDecayRate is the paper's pretraining decay per epoch (the repo's yaml says 0.9).
	DefaultDecayRate = 0.85
	DefaultAlpha     = 0.4
	DefaultDropout   = 0.1
	DefaultLogEvery  = 10
)

// DefaultConfig is the paper's recipe for task (ViT-B: pretraining lr 3e-4 for 20
// epochs, captioning 1e-5 for 5, retrieval 1e-5 for 6).
func DefaultConfig(task Task) Config {
	c := Config{Task: task, Captions: CaptionsAll, MaxWords: DefaultMaxWords, BatchSize: DefaultBatchSize,
		WeightDecay: blip.WeightDecay, QueueSize: blip.DefaultQueueSize, Alpha: DefaultAlpha, Momentum: blip.MomentumRate,
		Dropout: DefaultDropout, DropPath: -1, Augment: true, Device: torch.CPU, LogEvery: DefaultLogEvery}
	switch task {
	case TaskPretrain:
		c.Epochs, c.LR, c.MinLR, c.WarmupLR, c.WarmupSteps, c.DecayRate = 20, 3e-4, 1e-6, DefaultWarmupLR, DefaultWarmupSteps, DefaultDecayRate
		c.MinScale = imageproc.PretrainMinScale
	case TaskCaption:
		c.Epochs, c.LR, c.MinScale = 5, 1e-5, imageproc.FinetuneMinScale
	case TaskRetrieval:
		c.Epochs, c.LR, c.MinScale, c.NegativeAllRank = 6, 1e-5, imageproc.FinetuneMinScale, true
	}
	return c
}

// Problem is one bad field: its setting name (the Config field in snake case, which
// the CLI maps to its flag), the value and why it is refused.
type Problem struct {
	Field, Value, Reason string
}

// Problems is every bad field of a Config.
type Problems []Problem

func (ps Problems) Error() string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = fmt.Sprintf("%s %s: %s", p.Field, p.Value, p.Reason)
	}
	return "training config: " + strings.Join(s, "; ")
}

// Validate checks every field; the error is a Problems naming each bad one.
func (c Config) Validate() error {
	var ps Problems
	bad := func(field string, value any, format string, args ...any) {
		ps = append(ps, Problem{Field: field, Value: fmt.Sprint(value), Reason: fmt.Sprintf(format, args...)})
	}
	finite := func(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
	if _, err := ParseTask(string(c.Task)); err != nil {
		bad("task", fmt.Sprintf("%q", c.Task), "want pretrain, caption or retrieval")
	}
	if len(c.Data) == 0 {
		bad("data", "[]", "no data source")
	}
	if _, err := ParseCaptionSelector(string(c.Captions)); err != nil {
		bad("captions", fmt.Sprintf("%q", c.Captions), "want web, synthetic or all")
	}
	if c.MaxWords < 1 {
		bad("max_words", c.MaxWords, "must be at least 1")
	}
	if c.Out == "" {
		bad("out", `""`, "no output folder")
	}
	in := c.Init
	fresh := in.Preset != "" || in.ModelConfig != ""
	switch {
	case in.From != "" && fresh:
		bad("init", in.From, "give a checkpoint or a fresh model (preset or config), not both")
	case in.From == "" && !fresh && !c.Resume:
		bad("init", `""`, "give a checkpoint to start from, or a preset or model config for a fresh model")
	case in.Preset != "" && in.ModelConfig != "":
		bad("init_preset", in.Preset, "give a preset or a model config, not both")
	case fresh && in.Vocab == "":
		bad("init_vocab", `""`, "a fresh model needs a vocabulary (vocab.txt or tokenizer.json)")
	}
	if in.From != "" && (in.Vision != "" || in.Text != "") {
		bad("init_vision", in.Vision+in.Text, "the ViT and BERT initialisations are for a fresh model, not a checkpoint")
	}
	if in.ImageSize < 0 {
		bad("image_size", in.ImageSize, "must be 0 (the task's) or positive")
	}
	if c.Epochs < 1 {
		bad("epochs", c.Epochs, "must be at least 1")
	}
	if c.BatchSize < 1 {
		bad("batch_size", c.BatchSize, "must be at least 1")
	} else if c.BatchSize < 2 && c.Task != TaskCaption {
		bad("batch_size", c.BatchSize, "ITM hard negatives need a batch of at least 2")
	}
	if !finite(c.LR) || c.LR <= 0 {
		bad("lr", c.LR, "must be > 0")
	}
	if !finite(c.MinLR) || c.MinLR < 0 || c.MinLR > c.LR {
		bad("min_lr", c.MinLR, "must be in [0, lr]")
	}
	if c.Task == TaskPretrain {
		if !finite(c.WarmupLR) || c.WarmupLR < 0 || c.WarmupLR > c.LR {
			bad("warmup_lr", c.WarmupLR, "must be in [0, lr]")
		}
		if c.WarmupSteps < 0 {
			bad("warmup_steps", c.WarmupSteps, "must be 0 or more")
		}
		if !finite(c.DecayRate) || c.DecayRate <= 0 || c.DecayRate > 1 {
			bad("lr_decay_rate", c.DecayRate, "must be in (0, 1]")
		}
	}
	if !finite(c.WeightDecay) || c.WeightDecay < 0 {
		bad("weight_decay", c.WeightDecay, "must be 0 or more")
	}
	if c.Task != TaskCaption {
		if c.QueueSize < 1 {
			bad("queue_size", c.QueueSize, "must be at least 1")
		}
		if !finite(c.Alpha) || c.Alpha < 0 || c.Alpha > 1 {
			bad("alpha", c.Alpha, "must be in [0, 1]")
		}
		if !finite(c.Momentum) || c.Momentum < 0 || c.Momentum >= 1 {
			bad("momentum", c.Momentum, "must be in [0, 1)")
		}
	}
	if !finite(c.Dropout) || c.Dropout < 0 || c.Dropout >= 1 {
		bad("dropout", c.Dropout, "must be in [0, 1)")
	}
	if !finite(c.DropPath) || c.DropPath >= 1 {
		bad("drop_path", c.DropPath, "must be below 1 (negative: the model config's)")
	}
	if c.Augment && (!finite(c.MinScale) || c.MinScale <= 0 || c.MinScale > 1) {
		bad("min_scale", c.MinScale, "must be in (0, 1]")
	}
	if c.Workers < 0 {
		bad("workers", c.Workers, "must be 0 (one per CPU) or more")
	}
	if c.LogEvery < 1 {
		bad("log_every", c.LogEvery, "must be at least 1")
	}
	if c.SaveEvery < 0 {
		bad("save_every", c.SaveEvery, "must be 0 (epoch ends only) or more")
	}
	if c.MaxSteps < 0 {
		bad("max_steps", c.MaxSteps, "must be 0 (every epoch) or more")
	}
	if len(ps) > 0 {
		return ps
	}
	return nil
}

// world is the number of processes.
func (c Config) world() int {
	if c.Dist == nil {
		return 1
	}
	return c.Dist.Size()
}

func (c Config) rank() int {
	if c.Dist == nil {
		return 0
	}
	return c.Dist.Rank()
}
