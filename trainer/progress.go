package trainer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"
)

// Hooks are what a caller of Train watches the run with.
type Hooks struct {
	// Progress is called on the training goroutine after every step; keep it cheap.
	Progress func(Progress)
	// Log gets the run's events: epoch summaries, checkpoints, resumes (nil: discarded).
	Log *slog.Logger
}

// LossValues are one step's losses; a loss the task does not have is 0 (captioning:
// LM = Total).
type LossValues struct {
	ITC   float64 `json:"itc"`
	ITM   float64 `json:"itm"`
	LM    float64 `json:"lm"`
	Total float64 `json:"total"`
}

// Progress is where a run stands after a step.
type Progress struct {
	Step, Steps              int // global steps done (from 1) and planned
	Epoch, Epochs            int // the step's epoch (from 0) and the planned epochs
	EpochStep, StepsPerEpoch int // the step within its epoch (from 1) and the epoch's length
	LR                       float64
	Loss                     LossValues
	// ImagesPerSec counts every process's images, over the steps of this invocation.
	ImagesPerSec float64
	// DataWait is the share of this epoch's step time spent waiting for a batch.
	DataWait float64
	ETA      time.Duration
	// StepTime is this step's wall time, its batch's wait included; StepWait the time
	// it waited for the batch; AllReduceWait the time it waited, after backward, for
	// the gradient all-reduce to finish (data-parallel runs; the part of it that
	// overlapped the backward pass is not counted).
	StepTime, StepWait, AllReduceWait time.Duration
}

// StepRecord is one logged step: a line of OUT/train_log.jsonl.
type StepRecord struct {
	Step         int     `json:"step"`
	Epoch        int     `json:"epoch"`
	LR           float64 `json:"lr"`
	ITC          float64 `json:"itc,omitempty"`
	ITM          float64 `json:"itm,omitempty"`
	LM           float64 `json:"lm,omitempty"`
	Total        float64 `json:"total"`
	ImagesPerSec float64 `json:"images_per_sec"`
	DataWait     float64 `json:"data_wait"`
	// StepSeconds is the logged step's wall time; AllReduceWait its wait for the
	// gradient all-reduce after backward.
	StepSeconds   float64   `json:"step_s"`
	AllReduceWait float64   `json:"all_reduce_wait_s,omitempty"`
	Time          time.Time `json:"time"`
}

// Result is what a finished (or MaxSteps-stopped) run did.
type Result struct {
	// Dir holds the trained model in the HF layout.
	Dir string
	// Steps and Epochs are the steps done in all (a resumed run counts the earlier ones)
	// and the epochs completed (a run stopped by MaxSteps may end inside one).
	Steps, Epochs int
	Resumed       bool
	// History is every logged step of this invocation.
	History []StepRecord
	// EpochStats are the data loader's counts of each epoch this invocation ran
	// (this process's share).
	EpochStats []EpochStats
}

// meter measures the speed of the steps this invocation runs.
type meter struct {
	t0         time.Time
	firstStep  int
	images     int64 // this process's images since t0
	epochStart time.Time
	// stepAllReduce is the time the last step's GradSync.Finish waited.
	stepAllReduce time.Duration
}

func (m *meter) start(step int) { m.t0, m.firstStep = time.Now(), step }

func (m *meter) startEpoch() { m.epochStart = time.Now() }

// report updates the meter after a step, calls the progress hook and logs the step's
// record when it is due.
func (r *run) report(lr float64, loss LossValues, images int, st EpochStats, stepTime, stepWait time.Duration) {
	m := &r.meter
	m.images += int64(images)
	now := time.Now()
	elapsed := now.Sub(m.t0).Seconds()
	p := Progress{Step: r.step, Steps: r.stop, Epoch: r.epoch, Epochs: r.cfg.Epochs, EpochStep: r.epochStep,
		StepsPerEpoch: r.spe, LR: lr, Loss: loss, StepTime: stepTime, StepWait: stepWait,
		AllReduceWait: m.stepAllReduce}
	if elapsed > 0 {
		p.ImagesPerSec = float64(m.images) * float64(r.world) / elapsed
		if done := r.step - m.firstStep; done > 0 {
			p.ETA = time.Duration(float64(r.stop-r.step) * elapsed / float64(done) * float64(time.Second))
		}
	}
	if e := now.Sub(m.epochStart); e > 0 {
		p.DataWait = st.Wait.Seconds() / e.Seconds()
	}
	if r.hooks.Progress != nil {
		r.hooks.Progress(p)
	}
	if r.step%r.cfg.LogEvery != 0 && r.step != r.stop && r.epochStep != r.spe {
		return
	}
	rec := StepRecord{Step: r.step, Epoch: r.epoch, LR: lr, ITC: loss.ITC, ITM: loss.ITM, LM: loss.LM, Total: loss.Total,
		ImagesPerSec: p.ImagesPerSec, DataWait: p.DataWait, StepSeconds: stepTime.Seconds(),
		AllReduceWait: p.AllReduceWait.Seconds(), Time: now.UTC()}
	r.res.History = append(r.res.History, rec)
	if r.logFile == nil {
		return
	}
	line, _ := json.Marshal(rec)
	if _, err := r.logFile.Write(append(line, '\n')); err != nil {
		r.log.Warn("train log", "error", err)
	}
}

// openTrainLog opens the JSONL log for appending, after dropping the records of steps
// past the checkpoint a run resumes from (a killed run logged them, the resumed one
// logs them again).
func openTrainLog(path string, step int) (*os.File, error) {
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	var kept []byte
	for _, line := range bytes.SplitAfter(data, []byte("\n")) {
		var rec StepRecord
		if len(bytes.TrimSpace(line)) == 0 || json.Unmarshal(line, &rec) != nil || rec.Step > step || line[len(line)-1] != '\n' {
			continue
		}
		kept = append(kept, line...)
	}
	if err := replaceFile(path, kept); err != nil {
		return nil, fmt.Errorf("train log: %w", err)
	}
	return os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0o644)
}
