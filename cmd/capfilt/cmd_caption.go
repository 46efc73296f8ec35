package main

import (
	"encoding/json"
	"fmt"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/capfilt/capfilt/captioner"
	"github.com/capfilt/capfilt/pipeline/spec"
)

type captionCommand struct {
	load  loadOptions
	gen   generationOptions
	Batch batchSize
	JSON  bool

	st spec.Generation
}

func newCaptionCommand(a *app) *cobra.Command {
	c := &captionCommand{}
	cmd := &cobra.Command{
		Use:   "caption --model PATH [--mode nucleus|beam|greedy] IMAGE_OR_URL...",
		Short: "Caption images with a BLIP captioning model",
		Long: `Writes one line per caption: the image, a tab, the caption (--json: one JSON object per
image with every caption's text, score and token ids). nucleus (the default) is CapFilt's
sampler: top-p 0.9 after top-k 50, repetition penalty 1.1, lengths 30/10; the draws are
seeded by --seed and the image's name, so an image gets the same captions in any batch.`,
		Args: cobra.MinimumNArgs(1),
		PreRunE: func(*cobra.Command, []string) (err error) {
			if _, _, err = c.load.resolve(a); err != nil {
				return err
			}
			c.st, err = c.gen.settings(a)
			return err
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			batch := c.Batch.or(8)
			lm, err := c.load.load(a, true)
			if err != nil {
				return err
			}
			defer lm.Close()
			capt, err := captioner.New(lm.Model, lm.Tokenizer, c.st)
			if err != nil {
				return err
			}
			var bar *progressbar.ProgressBar
			if len(args) > batch {
				bar = progressbar.NewOptions(len(args), progressbar.OptionSetWriter(a.stderr), progressbar.OptionSetDescription("captioning"),
					progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionSetItsString("img"))
			}
			asJSON := c.JSON
			failed := 0
			size := lm.Model.Config.Vision.ImageSize
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
					caps, err := capt.CaptionPixels(cmd.Context(), pixels, keys)
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
	f := cmd.Flags()
	c.load.AddFlags(f)
	c.gen.AddFlags(f)
	addBatchSizeFlag(f, &c.Batch)
	addJSONFlag(f, &c.JSON)
	return cmd
}
