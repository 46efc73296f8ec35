package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/capfilt/capfilt/trainer/eval"
)

// newEvalCommand holds the evaluation commands. Each reads its own flags (through
// cmd.Flags, not the shared settings), so it stands apart from the pipeline's.
func newEvalCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "eval",
		Short: "Score captions (BLEU, CIDEr-D) and retrieval (R@K) with the paper's metrics",
	}
	cmd.AddCommand(newEvalCaptionCommand(a), newEvalRetrievalCommand(a))
	return cmd
}

func newEvalCaptionCommand(a *app) *cobra.Command {
	var predsFile, refsFile, out string
	m := &evalCaptionModel{}
	cmd := &cobra.Command{
		Use:   "caption {--model DIR --data coco:ANNOTATIONS.json[@IMAGE_ROOT] | --predictions RESULTS.json --references ANNOTATIONS.json} [--out SCORES.json]",
		Short: "Caption an evaluation set with a model (beam search), or score given captions, with coco-caption's BLEU-1..4 and CIDEr-D",
		Long: `With --model, captions every image of --data with beam search (BLIP's COCO evaluation: 3 beams,
max length 20, min length 5, prompt "a picture of "; --num-beams, --max-length, --min-length,
--repetition-penalty and --prompt change them) and scores the captions against the set's
references; --data is a COCO annotations file or BLIP's image list with its image folder.

Without a model, scores a captioner's output as coco-caption does: both sides go
through PTB tokenisation (lower-cased, punctuation tokens removed), BLEU is the corpus
BLEU with the closest reference length, CIDEr-D takes its document frequencies from the
references of the predicted images.

--predictions is a COCO results file: [{"image_id": ID, "caption": "..."}, ...], one per
image. --references is COCO annotations ({"images": [...], "annotations": [{"image_id",
"caption"}, ...]}) or BLIP's list ([{"image": PATH, "caption": "..." | [...], "image_id"}]).
IDs are integers or strings; 391895 and "391895" are the same image. Every predicted image
needs references; reference images without a prediction are not scored (as coco-caption).

Prints a table (scores ×100) and, with --out, writes the scores (fractions, coco-caption's
key names) and each image's CIDEr-D as JSON.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if m.load.Model != "" {
				if predsFile != "" || refsFile != "" {
					return usagef("eval caption: give --model and --data, or --predictions and --references, not both")
				}
				return m.run(a, cmd, out)
			}
			if predsFile == "" || refsFile == "" {
				return usagef("eval caption: give --model DIR and --data coco:ANNOTATIONS.json, or --predictions RESULTS.json and --references ANNOTATIONS.json")
			}
			preds, err := eval.ReadPredictions(predsFile)
			if err != nil {
				return err
			}
			refs, err := eval.ReadReferences(refsFile)
			if err != nil {
				return err
			}
			scores, err := eval.ScoreCaptions(preds, refs)
			if err != nil {
				return fmt.Errorf("%s against %s: %w", predsFile, refsFile, err)
			}
			return reportCaptionScores(a.stdout, out, captionReport{Predictions: predsFile, References: refsFile, Scores: scores})
		},
	}
	f := cmd.Flags()
	f.StringVar(&predsFile, "predictions", "", "COCO results JSON: [{\"image_id\", \"caption\"}]")
	f.StringVar(&refsFile, "references", "", "reference captions: COCO annotations JSON or BLIP's image list")
	perInvocation(f, "predictions", "references")
	addOutFlag(f, &out)
	m.AddFlags(f)
	return cmd
}

// captionReport is what eval caption writes with --out; a model-based evaluation fills
// Model and the settings it generated with.
type captionReport struct {
	Model       string             `json:"model,omitempty"`
	Predictions string             `json:"predictions,omitempty"`
	References  string             `json:"references"`
	Settings    map[string]any     `json:"settings,omitempty"`
	Scores      eval.CaptionScores `json:"scores"`
}

// reportCaptionScores prints the table and, when out is set, writes the JSON report.
func reportCaptionScores(stdout io.Writer, out string, r captionReport) error {
	if err := r.Scores.WriteTable(stdout); err != nil {
		return err
	}
	if out == "" {
		return nil
	}
	return writeJSONFile(out, r)
}

// writeJSONFile writes v indented, through a temporary file renamed into place, so a
// reader never sees half a report.
func writeJSONFile(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
