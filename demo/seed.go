package demo

import (
	"context"
	"path/filepath"
	"strconv"
	"time"

	"github.com/capfilt/capfilt/blip"
	"github.com/capfilt/capfilt/synth"
	"github.com/capfilt/capfilt/torch"
	"github.com/capfilt/capfilt/trainer"
)

// The rows of the table, in order: what each pretraining run reads besides the
// annotated set.
const (
	RowBaseline = "noisy web"
	RowC        = "+C"
	RowF        = "+F"
	RowCF       = "+C+F"
	RowCFBeam   = "+C+F beam"
)

// Rows are the table's rows in order.
var Rows = []string{RowBaseline, RowC, RowF, RowCF, RowCFBeam}

// SeedResult is everything one seed measured.
type SeedResult struct {
	Seed      uint64          `json:"seed"`
	WorldDir  string          `json:"world_dir"`
	Rows      []RowResult     `json:"rows"`
	CapFilt   []CapFiltRun    `json:"capfilt"`
	Captioner CaptionerScores `json:"captioner"`
	// Training is every training run's logged losses, in the order they ran.
	Training []TrainingRun `json:"training"`
	Gallery  []GalleryItem `json:"gallery"`
}

// RowResult is one row's pretraining and its evaluation on the test set.
type RowResult struct {
	Name string `json:"name"`
	// Data names what the pretraining read; Samples is how many samples an epoch of it
	// holds (the annotated set's captions and the web images that kept a caption).
	Data    string `json:"data"`
	Samples int64  `json:"samples"`
	Scores  Scores `json:"scores"`
	Model   string `json:"model"`
}

// TrainingRun is one training run's loss curve.
type TrainingRun struct {
	Name    string               `json:"name"`
	Task    trainer.Task         `json:"task"`
	Steps   int                  `json:"steps"`
	Seconds float64              `json:"seconds"`
	History []trainer.StepRecord `json:"history"`
}

// run is the seed's demo, stage by stage.
func (s *seedRun) run(ctx context.Context) (*SeedResult, error) {
	r := s.cfg.Recipe
	s.out = &SeedResult{Seed: s.seed}
	if err := s.timed("synth", func() error { return s.synth(ctx) }); err != nil {
		return nil, err
	}
	init := filepath.Join(s.dir, "init")
	if err := s.timed("init", func() error {
		return InitModel(s.world.ModelConfigFile, s.world.VocabFile, r.InitStd, s.seed, init)
	}); err != nil {
		return nil, err
	}
	annotated := trainer.DataSource{Kind: trainer.SourceCOCO, Location: s.world.Annotated.Annotations}
	web := trainer.DataSource{Kind: trainer.SourceWeb, Location: s.world.WebPattern}

	// The bootstrap model is the baseline row's model: the same init, data and recipe.
	pre := map[string]string{}
	var err error
	if pre[RowBaseline], err = s.pretrain(ctx, RowBaseline, init, []trainer.DataSource{annotated, web}, trainer.CaptionsAll); err != nil {
		return nil, err
	}
	var captioner, filter string
	if captioner, err = s.finetune(ctx, "finetune captioner", trainer.TaskCaption, pre[RowBaseline], r.Captioner); err != nil {
		return nil, err
	}
	if filter, err = s.finetune(ctx, "finetune filter", trainer.TaskRetrieval, pre[RowBaseline], r.Filter); err != nil {
		return nil, err
	}

	runs := []struct {
		stage, name string
		gen         func() capfiltSpec
	}{
		{"capfilt nucleus", "nucleus", func() capfiltSpec { return capfiltSpec{Generation: r.Nucleus, Threshold: r.Threshold} }},
		{"capfilt nucleus, filter off", "nucleus-all", func() capfiltSpec { return capfiltSpec{Generation: r.Nucleus, Threshold: 0} }},
		{"capfilt beam", "beam", func() capfiltSpec { return capfiltSpec{Generation: r.Beam, Threshold: r.Threshold} }},
	}
	outs := map[string]*CapFiltRun{}
	for _, c := range runs {
		sp := c.gen()
		sp.Name, sp.Captioner, sp.Filter = c.name, captioner, filter
		sp.Generation.Seed = s.seed
		var cr *CapFiltRun
		if err := s.timed(c.stage, func() (err error) { cr, err = s.capfilt(ctx, c.stage, sp); return err }); err != nil {
			return nil, err
		}
		outs[c.name] = cr
	}

	cleaned := func(run string) trainer.DataSource {
		return trainer.DataSource{Kind: trainer.SourceCleaned, Location: filepath.Join(outs[run].Dir, "*.parquet")}
	}
	rowData := []struct {
		row      string
		src      trainer.DataSource
		captions trainer.CaptionSelector
	}{
		{RowC, cleaned("nucleus-all"), trainer.CaptionsAll},
		{RowF, cleaned("nucleus"), trainer.CaptionsWeb},
		{RowCF, cleaned("nucleus"), trainer.CaptionsAll},
		{RowCFBeam, cleaned("beam"), trainer.CaptionsAll},
	}
	for _, rd := range rowData {
		if pre[rd.row], err = s.pretrain(ctx, rd.row, init, []trainer.DataSource{annotated, rd.src}, rd.captions); err != nil {
			return nil, err
		}
	}

	if err := s.scoreCapFilt(outs); err != nil {
		return nil, err
	}
	for _, c := range runs {
		s.out.CapFilt = append(s.out.CapFilt, *outs[c.name])
	}
	for _, row := range Rows {
		var rr RowResult
		if err := s.timed("evaluate "+row, func() (err error) {
			// Every row, the baseline too, is finetuned for the evaluation with the same
			// recipe: CapFilt's captioner and filter had longer finetunes of their own.
			cap, err := s.finetuneQuiet(ctx, row+" caption", trainer.TaskCaption, pre[row], r.Caption, "eval-caption")
			if err != nil {
				return err
			}
			filt, err := s.finetuneQuiet(ctx, row+" retrieval", trainer.TaskRetrieval, pre[row], r.Retrieval, "eval-retrieval")
			if err != nil {
				return err
			}
			rr, err = s.evaluate(ctx, row, cap, filt)
			return err
		}); err != nil {
			return nil, err
		}
		rr.Model = pre[row]
		s.out.Rows = append(s.out.Rows, rr)
	}
	s.describeRows(outs)
	return s.out, nil
}

func (s *seedRun) synth(ctx context.Context) error {
	wc := s.cfg.Recipe.World
	wc.Out, wc.Seed = filepath.Join(s.dir, "world"), s.seed
	w, err := synth.Generate(ctx, wc)
	if err != nil {
		return err
	}
	s.world, s.out.WorldDir = w, w.Dir
	return nil
}

// pretrain runs one pretraining row from init on data, as its own stage.
func (s *seedRun) pretrain(ctx context.Context, row, init string, data []trainer.DataSource, captions trainer.CaptionSelector) (string, error) {
	out := filepath.Join(s.dir, "pretrain", folderName(row))
	stage := "pretrain " + row
	cfg := s.cfg.Recipe.Pretrain.trainConfig(trainer.TaskPretrain, data, 0, captions, trainer.Init{From: init}, out, s.seed)
	return out, s.timed(stage, func() error { return s.train(ctx, stage, cfg) })
}

// finetune runs a captioner or filter finetune of the pretrained model from, as its own stage.
func (s *seedRun) finetune(ctx context.Context, stage string, task trainer.Task, from string, t Training) (string, error) {
	var out string
	err := s.timed(stage, func() (err error) { out, err = s.finetuneQuiet(ctx, stage, task, from, t, string(task)); return err })
	return out, err
}

// finetuneQuiet is a finetune on the annotated set inside another stage, into the
// folder beside from named with suffix.
func (s *seedRun) finetuneQuiet(ctx context.Context, name string, task trainer.Task, from string, t Training, suffix string) (string, error) {
	out := from + "-" + suffix
	data := []trainer.DataSource{{Kind: trainer.SourceCOCO, Location: s.world.Annotated.Annotations}}
	captions := 0
	for _, img := range s.world.Annotated.Images {
		captions += len(img.Captions)
	}
	cfg := t.trainConfig(task, data, int64(captions), trainer.CaptionsAll, trainer.Init{From: from}, out, s.seed)
	return out, s.train(ctx, name, cfg)
}

func (s *seedRun) train(ctx context.Context, name string, cfg trainer.Config) error {
	h := s.cfg.Hooks
	hooks := trainer.Hooks{Log: h.Log}
	if h.Train != nil {
		hooks.Progress = func(p trainer.Progress) { h.Train(name, p) }
	}
	began := time.Now()
	res, err := trainer.Train(ctx, cfg, hooks)
	if err != nil {
		return err
	}
	tr := TrainingRun{Name: name, Task: cfg.Task, Steps: res.Steps, History: res.History, Seconds: time.Since(began).Seconds()}
	s.out.Training = append(s.out.Training, tr)
	return nil
}

// loadModel loads a trained model to evaluate it on the CPU.
func loadModel(dir string) (*blip.Inference, error) {
	return blip.LoadForInference(dir, blip.InferenceOptions{Device: torch.CPU, DType: torch.Float32})
}

// folderName is a row's folder: "+C+F beam" → "c-f-beam", the baseline "noisy-web".
func folderName(row string) string {
	switch row {
	case RowBaseline:
		return "noisy-web"
	case RowC:
		return "c"
	case RowF:
		return "f"
	case RowCF:
		return "c-f"
	case RowCFBeam:
		return "c-f-beam"
	}
	return strconv.Quote(row)
}
