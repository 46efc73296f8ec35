package main

import (
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/capfilt/capfilt/blip"
	"github.com/capfilt/capfilt/pipeline/spec"
	"github.com/capfilt/capfilt/trainer"
	"github.com/capfilt/capfilt/trainer/eval"
)

// evalSetOptions name a model and the evaluation set it runs on.
type evalSetOptions struct {
	load loadOptions
	data []string
}

func (o *evalSetOptions) AddFlags(f *pflag.FlagSet) {
	o.load.AddFlags(f)
	addDataFlag(f, &o.data)
}

// open loads the model and reads the set: one coco: source.
func (o *evalSetOptions) open(a *app, what string) (*blip.Inference, *trainer.EvalSet, string, error) {
	if len(o.data) != 1 {
		return nil, nil, "", usagef("eval %s: give one --data coco:ANNOTATIONS.json[@IMAGE_ROOT] (%d given)", what, len(o.data))
	}
	src, err := trainer.ParseDataSource(o.data[0])
	if err != nil {
		return nil, nil, "", usagef("data: %v", err)
	}
	if src.Kind != trainer.SourceCOCO {
		return nil, nil, "", usagef("data %s: an evaluation set is coco:ANNOTATIONS.json[@IMAGE_ROOT] (images with reference captions)", src)
	}
	set, err := trainer.OpenEvalSet(src.Location, src.ImageRoot)
	if err != nil {
		return nil, nil, "", usagef("data: %v", err)
	}
	m, err := o.load.load(a, true)
	if err != nil {
		return nil, nil, "", err
	}
	return m, set, src.String(), nil
}

// evalCaptionModel is eval caption's model mode: beam search over the set, then the
// same scores as for given predictions.
type evalCaptionModel struct {
	evalSetOptions
	gen generationOptions
}

func (o *evalCaptionModel) AddFlags(f *pflag.FlagSet) {
	o.evalSetOptions.AddFlags(f)
	o.gen.addDecodingFlags(f)
}

func (o *evalCaptionModel) run(a *app, cmd *cobra.Command, out string) error {
	gen, err := o.gen.resolve(a, spec.Beam)
	if err != nil {
		return err
	}
	m, set, data, err := o.open(a, "caption")
	if err != nil {
		return err
	}
	defer m.Close()
	res, err := trainer.EvalCaption(cmd.Context(), m, set, trainer.CaptionOptions{Generation: gen})
	if err != nil {
		return err
	}
	settings := map[string]any{"mode": gen.Mode, "num_beams": gen.NumBeams, "max_length": gen.MaxLength,
		"min_length": gen.MinLength, "repetition_penalty": gen.RepetitionPenalty, "prompt": gen.Prompt}
	return reportCaptionScores(a.stdout, out, captionReport{Model: o.load.Model, References: data, Settings: settings, Scores: res.Scores})
}

// retrievalReport is what eval retrieval writes with --out.
type retrievalReport struct {
	Model  string               `json:"model"`
	Data   string               `json:"data"`
	K      int                  `json:"k"`
	Scores eval.RetrievalScores `json:"scores"`
}

func newEvalRetrievalCommand(a *app) *cobra.Command {
	o := &evalSetOptions{}
	var k int
	var out string
	cmd := &cobra.Command{
		Use:   "retrieval --model DIR --data coco:ANNOTATIONS.json[@IMAGE_ROOT] [--rerank-k 256] [--out SCORES.json]",
		Short: "Text and image retrieval R@1/5/10 of a model: ITC candidates re-ranked by ITM, as BLIP evaluates",
		Long: `Every caption of every image of --data is a text. The ITC cosine of each image with each text
picks each image's --rerank-k best texts and each text's best images; the ITM head scores those
pairs, and the ranking score is ITM logit + cosine (BLIP's k: 256 on COCO, 128 on Flickr).
Texts are pre_caption'd to 30 words and padded to 35 tokens, images resized to the model's size.

Prints TR@1/5/10 (image → texts: an image counts when any of its captions ranks within K) and
IR@1/5/10 (text → images) ×100; with --out writes them as JSON (fractions, BLIP's key names).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if k < 1 {
				return a.bad("rerank-k", k, "must be at least 1")
			}
			m, set, data, err := o.open(a, "retrieval")
			if err != nil {
				return err
			}
			defer m.Close()
			scores, err := trainer.EvalRetrieval(cmd.Context(), m, set, trainer.RetrievalOptions{K: k})
			if err != nil {
				return err
			}
			if err := scores.WriteTable(a.stdout); err != nil {
				return err
			}
			if out == "" {
				return nil
			}
			return writeJSONFile(out, retrievalReport{Model: o.load.Model, Data: data, K: k, Scores: scores})
		},
	}
	f := cmd.Flags()
	o.AddFlags(f)
	f.IntVar(&k, "rerank-k", trainer.DefaultRetrievalK, "ITC candidates per image and per text that ITM re-ranks")
	addOutFlag(f, &out)
	return cmd
}
