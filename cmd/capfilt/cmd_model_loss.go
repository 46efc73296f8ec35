package main

import (
	"sort"

	"github.com/spf13/cobra"

	"github.com/capfilt/capfilt/blip"
	"github.com/capfilt/capfilt/torch"
)

func newModelLossCommand(a *app) *cobra.Command {
	var load loadOptions
	var files tensorFiles
	var grads bool
	var seed uint64
	cmd := &cobra.Command{
		Use:   "loss --model DIR --inputs IN.safetensors --out OUT.safetensors [--grads]",
		Short: "Run one pretraining step's ITC, ITM and LM losses (and gradients) on given inputs",
		Long: `The training twin of "model forward": one BLIP pretraining step in eval math (dropout off), the
momentum model a copy of the checkpoint as at the start of training, so the losses can be checked
against an independent implementation. The checkpoint must be a pretraining one (every part, the
decoder sharing the encoder's weights but self-attention).

Inputs (names with or without the "inputs." prefix):
  pixel_values    [B,3,S,S] float32, normalised, S the config's image size
  input_ids       [B,T] int64, [CLS] first (the tokenizer's output)
  attention_mask  [B,T] 1 = token, 0 = pad
  neg_image_idx   [B] int64, optional: text b's negative image (an index into the batch)
  neg_text_idx    [B] int64, optional: image b's negative text; give both or neither
                  (absent: drawn as training does, from --loss-seed)
  image_queue     [E,Q] float32, optional: the image feature queue before the step
  text_queue      [E,Q] float32, optional; give both or neither (absent: 57600 columns
                  drawn N(0,1) and normalised from --loss-seed); Q must be divisible by B
  alpha           [] float32, optional: the distillation weight (absent: 0, the ramp's
                  value at the first step)

Outputs: loss.itc, loss.itm, loss.lm, loss.total; itm.neg_image_idx and itm.neg_text_idx
(the negatives used); queue.image and queue.text (after the step's write); with --grads,
grad.NAME for every parameter under its HF name (a tensor the decoder shares with the
encoder once, under its text_encoder.* name).`,
		Args: cobra.NoArgs,
		PreRunE: func(*cobra.Command, []string) error {
			_, _, err := load.resolve(a)
			return err
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			inPath, outPath := files.In, files.Out
			if inPath == "" || outPath == "" {
				return usagef("--inputs and --out are required")
			}
			in, err := readInputs(inPath)
			if err != nil {
				return err
			}
			li := blip.LossInputs{
				PixelValues: in["inputs.pixel_values"], InputIDs: in["inputs.input_ids"], AttentionMask: in["inputs.attention_mask"],
				NegImageIdx: in["inputs.neg_image_idx"], NegTextIdx: in["inputs.neg_text_idx"],
				ImageQueue: in["inputs.image_queue"], TextQueue: in["inputs.text_queue"], Seed: seed,
			}
			if li.PixelValues == nil || li.InputIDs == nil || li.AttentionMask == nil {
				return usagef("inputs %s needs inputs.pixel_values, inputs.input_ids and inputs.attention_mask", inPath)
			}
			if al, ok := in["inputs.alpha"]; ok {
				if li.Alpha, err = al.Item(); err != nil {
					return usagef("inputs %s: inputs.alpha: %v", inPath, err)
				}
			}
			lm, err := load.load(a, false)
			if err != nil {
				return err
			}
			defer lm.Close()
			s := torch.NewScope()
			defer s.Close()
			out, err := lm.Model.ReferenceLosses(s, li, grads)
			if err != nil {
				return err
			}
			if err := blip.WriteTensors(outPath, out, map[string]string{"capfilt.version": capfiltVersion(), "model": load.Model,
				"math": "eval (no dropout)"}); err != nil {
				return err
			}
			names := make([]string, 0, len(out))
			for n := range out {
				names = append(names, n)
			}
			sort.Strings(names)
			grads := 0
			for _, n := range names {
				if len(n) > 5 && n[:5] == "grad." {
					grads++
					continue
				}
				if t := out[n]; t.Numel() == 1 && t.DType() == torch.Float32 {
					v, _ := t.Item()
					a.printf("%-20s %.6f\n", n, v)
				} else {
					a.printf("%-20s %v\n", n, t.Shape())
				}
			}
			if grads > 0 {
				a.printf("%-20s %d parameters\n", "grad.*", grads)
			}
			return nil
		},
	}
	f := cmd.Flags()
	load.AddFlags(f)
	files.AddFlags(f)
	f.BoolVar(&grads, "grads", false, "also write the gradient of every parameter")
	f.Uint64Var(&seed, "loss-seed", 0, "seed for the queues and hard negatives the inputs do not give")
	perInvocation(f, "grads", "loss-seed")
	return cmd
}
