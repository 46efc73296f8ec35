package trainer

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"

	"github.com/capfilt/capfilt/blip"
	"github.com/capfilt/capfilt/torch"
)

// A run's folder holds the model in the HF layout at its root (config.json,
// model.safetensors, vocab.txt: what `capfilt run --model` and blip.Load read) and
// train_state/: one checkpoint folder step-NNNNNNNNN (the same three model files, the
// optimizer, the momentum model and queues, state.json) named by train_state/latest.
// A checkpoint is written into a temporary folder and renamed into place, then latest
// is replaced by rename, then the root's model files are replaced (hard links to the
// checkpoint's): a run killed at any moment leaves the previous checkpoint or the new
// one whole, never a mixture.
const (
	stateDirName    = "train_state"
	latestName      = "latest"
	stateFile       = "state.json"
	optimizerFile   = "optimizer.pt"
	objectiveFile   = "objective.safetensors"
	trainLogName    = "train_log.jsonl"
	stateFormat     = "capfilt-train-state/1"
	modelConfigFile = "config.json"
	modelFile       = "model.safetensors"
	vocabFile       = "vocab.txt"
)

// settings are what a checkpoint's numbers depend on: a resume must run with the same.
type settings struct {
	Task            Task    `json:"task"`
	Data            string  `json:"data"` // Dataset.Fingerprint
	Sources         string  `json:"data_sources"`
	Captions        string  `json:"captions"`
	MaxWords        int     `json:"max_words"`
	World           int     `json:"world_size"`
	BatchSize       int     `json:"batch_size"`
	Epochs          int     `json:"epochs"`
	LR              float64 `json:"lr"`
	MinLR           float64 `json:"min_lr"`
	WarmupLR        float64 `json:"warmup_lr"`
	WarmupSteps     int     `json:"warmup_steps"`
	DecayRate       float64 `json:"lr_decay_rate"`
	WeightDecay     float64 `json:"weight_decay"`
	QueueSize       int     `json:"queue_size"`
	Alpha           float64 `json:"alpha"`
	Momentum        float64 `json:"momentum"`
	Dropout         float64 `json:"dropout"`
	DropPath        float64 `json:"drop_path"`
	Augment         bool    `json:"augment"`
	MinScale        float64 `json:"min_scale"`
	NegativeAllRank bool    `json:"negative_all_rank"`
	Seed            uint64  `json:"seed"`
	ShuffleBuffer   int     `json:"shuffle_buffer"`
	ImageSize       int     `json:"image_size"`
	Device          string  `json:"device"`
}

func (c Config) settings(d *Dataset, imageSize int) settings {
	src := make([]string, len(c.Data))
	for i, s := range c.Data {
		src[i] = s.String()
	}
	s := settings{Task: c.Task, Data: d.Fingerprint(), Sources: strings.Join(src, " "), Captions: string(c.Captions),
		MaxWords: c.MaxWords, World: c.world(), BatchSize: c.BatchSize, Epochs: c.Epochs, LR: c.LR, MinLR: c.MinLR,
		WeightDecay: c.WeightDecay, Dropout: c.Dropout, DropPath: c.DropPath, Augment: c.Augment, Seed: c.Seed,
		ShuffleBuffer: c.ShuffleBuffer, ImageSize: imageSize, Device: c.Device.String()}
	if c.Task == TaskPretrain {
		s.WarmupLR, s.WarmupSteps, s.DecayRate = c.WarmupLR, c.WarmupSteps, c.DecayRate
	}
	if c.Task != TaskCaption {
		s.QueueSize, s.Alpha, s.Momentum = c.QueueSize, c.Alpha, c.Momentum
	}
	if c.Task == TaskRetrieval {
		s.NegativeAllRank = c.NegativeAllRank
	}
	if c.Augment {
		s.MinScale = c.MinScale
	}
	return s
}

// differences names every setting that differs, as "name: saved → now".
func (s settings) differences(now settings) []string {
	var out []string
	a, b := reflect.ValueOf(s), reflect.ValueOf(now)
	for i := range a.NumField() {
		if !reflect.DeepEqual(a.Field(i).Interface(), b.Field(i).Interface()) {
			name, _, _ := strings.Cut(a.Type().Field(i).Tag.Get("json"), ",")
			out = append(out, fmt.Sprintf("%s: %v in the checkpoint, %v now", name, a.Field(i).Interface(), b.Field(i).Interface()))
		}
	}
	return out
}

// rankState is what each process of a run needs to continue bit for bit.
type rankState struct {
	Rank int `json:"rank"`
	// Data is the data position after the checkpoint's last batch (nil at an epoch's end).
	Data *DataPosition `json:"data,omitempty"`
	// TorchRNG is libtorch's default generator of the CPU (dropout, drop path draw from
	// it on the CPU), DeviceRNG the training device's when it is a GPU, NegativesRNG the
	// hard negatives' own generator.
	TorchRNG     []byte `json:"torch_rng"`
	DeviceRNG    []byte `json:"device_rng,omitempty"`
	NegativesRNG []byte `json:"negatives_rng,omitempty"`
}

// trainState is state.json.
type trainState struct {
	Format   string   `json:"format"`
	Settings settings `json:"settings"`
	// Step is the number of steps done; Epoch and EpochStep where the last one was
	// (EpochStep == StepsPerEpoch: the epoch is done).
	Step          int         `json:"step"`
	Epoch         int         `json:"epoch"`
	EpochStep     int         `json:"epoch_step"`
	StepsPerEpoch int         `json:"steps_per_epoch"`
	Ranks         []rankState `json:"ranks"`
}

// captureRank records this process's random-number states and data position.
func captureRank(rank int, dev torch.Device, neg *torch.Generator, pos *DataPosition) (rankState, error) {
	rs := rankState{Rank: rank, Data: pos}
	var err error
	if rs.TorchRNG, err = torch.DefaultGeneratorState(torch.CPU); err != nil {
		return rs, err
	}
	if dev.CUDA {
		if rs.DeviceRNG, err = torch.DefaultGeneratorState(dev); err != nil {
			return rs, err
		}
	}
	if neg != nil {
		if rs.NegativesRNG, err = neg.State(); err != nil {
			return rs, err
		}
	}
	return rs, nil
}

// restore sets the random-number states rs recorded.
func (rs rankState) restore(dev torch.Device, neg *torch.Generator) error {
	if err := torch.SetDefaultGeneratorState(torch.CPU, rs.TorchRNG); err != nil {
		return fmt.Errorf("resume: rank %d: dropout generator: %w", rs.Rank, err)
	}
	if dev.CUDA {
		if err := torch.SetDefaultGeneratorState(dev, rs.DeviceRNG); err != nil {
			return fmt.Errorf("resume: rank %d: %v generator: %w", rs.Rank, dev, err)
		}
	}
	if neg != nil {
		if err := neg.SetState(rs.NegativesRNG); err != nil {
			return fmt.Errorf("resume: rank %d: hard-negative generator: %w", rs.Rank, err)
		}
	}
	return nil
}

// checkpointWriter writes a run's checkpoints (rank 0 only).
type checkpointWriter struct {
	out string
}

func (w checkpointWriter) stateDir() string { return filepath.Join(w.out, stateDirName) }

// write saves a checkpoint of st with the model, optimizer and objective state.
func (w checkpointWriter) write(st trainState, tm *trainModel, opt *torch.AdamW, obj objective) error {
	base := w.stateDir()
	if err := os.MkdirAll(base, 0o755); err != nil {
		return err
	}
	name := fmt.Sprintf("step-%09d", st.Step)
	tmp := filepath.Join(base, "tmp-"+name)
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	fail := func(err error) error {
		os.RemoveAll(tmp)
		return fmt.Errorf("checkpoint at step %d: %w", st.Step, err)
	}
	if err := tm.m.SaveHF(tmp, tm.tok); err != nil {
		return fail(err)
	}
	if err := opt.Save(filepath.Join(tmp, optimizerFile)); err != nil {
		return fail(err)
	}
	if state := obj.state(); state != nil {
		err := blip.WriteTensors(filepath.Join(tmp, objectiveFile), state, map[string]string{"format": "pt", "capfilt.task": string(st.Settings.Task)})
		if p, ok := state["queue_ptr"]; ok {
			p.Free() // State made it; the rest are the live tensors
		}
		if err != nil {
			return fail(err)
		}
	}
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fail(err)
	}
	if err := writeSynced(filepath.Join(tmp, stateFile), data); err != nil {
		return fail(err)
	}
	final := filepath.Join(base, name)
	if err := os.RemoveAll(final); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, final); err != nil {
		return fail(err)
	}
	if err := replaceFile(filepath.Join(base, latestName), []byte(name+"\n")); err != nil {
		return fmt.Errorf("checkpoint at step %d: %w", st.Step, err)
	}
	for _, f := range []string{modelConfigFile, modelFile, vocabFile} {
		if err := linkInto(filepath.Join(final, f), filepath.Join(w.out, f)); err != nil {
			return fmt.Errorf("checkpoint at step %d: export %s: %w", st.Step, f, err)
		}
	}
	// Older checkpoints (and a temporary folder a killed run left) go once the new one
	// is in place.
	entries, _ := os.ReadDir(base)
	for _, e := range entries {
		if e.IsDir() && e.Name() != name && (strings.HasPrefix(e.Name(), "step-") || strings.HasPrefix(e.Name(), "tmp-")) {
			os.RemoveAll(filepath.Join(base, e.Name()))
		}
	}
	return nil
}

// writeSynced writes data to path and syncs it.
func writeSynced(path string, data []byte) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// replaceFile writes data to path through a temporary file renamed over it.
func replaceFile(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := writeSynced(tmp, data); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// linkInto replaces dst by a hard link to src (a copy where links are not possible).
func linkInto(src, dst string) error {
	tmp := dst + ".tmp"
	os.Remove(tmp)
	if err := os.Link(src, tmp); err != nil {
		if err := copyFile(src, tmp); err != nil {
			return err
		}
	}
	return os.Rename(tmp, dst)
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// savedCheckpoint is a checkpoint found in a run's folder.
type savedCheckpoint struct {
	dir   string
	state trainState
}

// errNoCheckpoint says a run's folder has no checkpoint to resume.
var errNoCheckpoint = errors.New("no checkpoint")

// latestCheckpoint reads the checkpoint train_state/latest names.
func latestCheckpoint(out string) (*savedCheckpoint, error) {
	base := filepath.Join(out, stateDirName)
	data, err := os.ReadFile(filepath.Join(base, latestName))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("resume: %s: %w (train_state/latest is missing)", out, errNoCheckpoint)
	}
	if err != nil {
		return nil, fmt.Errorf("resume: %w", err)
	}
	dir := filepath.Join(base, strings.TrimSpace(string(data)))
	raw, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		return nil, fmt.Errorf("resume: %w", err)
	}
	var st trainState
	if err := json.Unmarshal(raw, &st); err != nil {
		return nil, fmt.Errorf("resume: %s: %w", filepath.Join(dir, stateFile), err)
	}
	if st.Format != stateFormat {
		return nil, fmt.Errorf("resume: %s: format %q, want %q", filepath.Join(dir, stateFile), st.Format, stateFormat)
	}
	return &savedCheckpoint{dir: dir, state: st}, nil
}

// loadInto restores the optimizer and the objective's state from the checkpoint.
func (ck *savedCheckpoint) loadInto(opt *torch.AdamW, obj objective) error {
	if err := opt.Load(filepath.Join(ck.dir, optimizerFile)); err != nil {
		return fmt.Errorf("resume: %w", err)
	}
	if !obj.stateful() {
		return nil
	}
	st, err := blip.ReadTensors(filepath.Join(ck.dir, objectiveFile))
	if err != nil {
		return fmt.Errorf("resume: %w", err)
	}
	defer func() {
		for _, t := range st {
			t.Free()
		}
	}()
	if err := obj.setState(st); err != nil {
		return fmt.Errorf("resume: %s: %w", filepath.Join(ck.dir, objectiveFile), err)
	}
	return nil
}
