package trainer

import (
	"log/slog"
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
}

// StepRecord is one logged step: a line of OUT/train_log.jsonl.
type StepRecord struct {
	Step         int       `json:"step"`
	Epoch        int       `json:"epoch"`
	LR           float64   `json:"lr"`
	ITC          float64   `json:"itc,omitempty"`
	ITM          float64   `json:"itm,omitempty"`
	LM           float64   `json:"lm,omitempty"`
	Total        float64   `json:"total"`
	ImagesPerSec float64   `json:"images_per_sec"`
	DataWait     float64   `json:"data_wait"`
	Time         time.Time `json:"time"`
}

// Result is what a finished (or MaxSteps-stopped) run did.
type Result struct {
	// Dir holds the trained model in the HF layout.
	Dir string
	// Steps and Epochs are the steps done in all (a resumed run counts the earlier ones)
	// and the epochs completed.
	Steps, Epochs int
	Resumed       bool
	// History is every logged step of this invocation.
	History []StepRecord
	// EpochStats are the data loader's counts of each epoch this invocation ran
	// (this process's share).
	EpochStats []EpochStats
}
