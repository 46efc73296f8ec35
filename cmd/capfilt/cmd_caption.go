package main

import (
	"encoding/json"
	"fmt"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/capfilt/capfilt/captioner"
)

func newCaptionCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "caption --model PATH [--mode nucleus|beam|greedy] IMAGE_OR_URL...",
		Short: "Caption images with a BLIP captioning model",
		Long: `Writes one line per caption: the image, a tab, the caption (--json: one JSON object per
image with every caption's text, score and token ids). nucleus (the default) is CapFilt's
sampler: top-p 0.9 after top-k 50, repetition penalty 1.1, lengths 30/10; the draws are
seeded by --seed and the image's name, so an image gets the same captions in any batch.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := a.generationSettings(captioner.Mode(a.v.GetString("mode")))
			if err != nil {
				return err
			}
			batch := a.v.GetInt("batch-size")
			if batch < 1 {
				return usagef("batch-size %d: must be at least 1", batch)
			}
			lm, err := a.loadModel(true)
			if err != nil {
				return err
			}
			defer lm.Close()
			c, err := captioner.New(lm.model, lm.tok, st)
			if err != nil {
				return err
			}
			var bar *progressbar.ProgressBar
			if len(args) > batch {
				bar = progressbar.NewOptions(len(args), progressbar.OptionSetWriter(a.stderr), progressbar.OptionSetDescription("captioning"),
					progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionSetItsString("img"))
			}
			asJSON := a.v.GetBool("json")
			failed := 0
			size := lm.model.Config.Vision.ImageSize
			for start := 0; start < len(args); start += batch {
				srcs := args[start:min(start+batch, len(args))]
				pixels, keep, errs := pixelBatch(cmd.Context(), srcs, size)
				for i, e := range errs {
					a.log.Error("image skipped", "image", srcs[i], "err", e)
					failed++
				}
				if pixels != nil {
					keys := make([]string, len(keep))
					for k, i := range keep {
						keys[k] = srcs[i]
					}
					caps, err := c.CaptionPixels(cmd.Context(), pixels, keys)
					pixels.Free()
					if err != nil {
						return err
					}
					for k, cs := range caps {
						if asJSON {
							line, _ := json.Marshal(map[string]any{"image": keys[k], "captions": cs})
							a.printf("%s\n", line)
							continue
						}
						for _, cp := range cs {
							a.printf("%s\t%s\n", keys[k], cp.Text)
						}
					}
				}
				if bar != nil {
					_ = bar.Add(len(srcs))
				}
			}
			if failed > 0 {
				return fmt.Errorf("%d of %d images could not be read", failed, len(args))
			}
			return nil
		},
	}
	addModelFlags(cmd)
	addGenerationFlags(cmd)
	f := cmd.Flags()
	f.String("mode", "nucleus", "decoding: nucleus, beam or greedy")
	f.Float64("top-p", 0.9, "nucleus: keep tokens until this much probability is covered")
	f.Int("top-k", 50, "nucleus: keep at most the k most likely tokens first (0: off)")
	f.Float64("temperature", 1, "nucleus: divide logits by this")
	f.Int("samples", 1, "nucleus: captions per image")
	f.String("prompt", captioner.DefaultPrompt, "text the decoder starts from, stripped from the output")
	f.Int64("seed", 0, "seed of the nucleus sampler (with each image's name)")
	f.Int("batch-size", 8, "images per model batch")
	f.Bool("json", false, "print JSON lines with scores and token ids")
	return cmd
}
