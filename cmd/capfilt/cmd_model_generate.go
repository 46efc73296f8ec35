package main

import (
	"context"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/capfilt/capfilt/blip"
	"github.com/capfilt/capfilt/captioner"
	"github.com/capfilt/capfilt/pipeline/spec"
	"github.com/capfilt/capfilt/torch"
)

func newModelGenerateCommand(a *app) *cobra.Command {
	var (
		load      loadOptions
		gen       generationOptions
		files     tensorFiles
		promptLen int
		st        spec.Generation
	)
	cmd := &cobra.Command{
		Use:   "generate --model PATH --inputs IN.safetensors --out OUT.safetensors [--mode nucleus|beam|greedy] [settings]",
		Short: "Decode from given images and start tokens; write generate.ids",
		Long: `The checkable core of captioning. Reads inputs.pixel_values [B,3,S,S] and the first --prompt-len
columns of inputs.decoder_input_ids ([DEC] first), decodes with the generation settings
(nucleus sampling seeded by --seed and the row's index, beam search or greedy)
(transformers-4.15 rules: lengths count the start tokens, [SEP] is barred below --min-length),
and writes generate.ids [B, ≤ max-length] int64, padded with 0 after [SEP].`,
		Args: cobra.NoArgs,
		PreRunE: func(*cobra.Command, []string) error {
			if _, _, err := load.resolve(a); err != nil {
				return err
			}
			var err error
			st, err = gen.settings(a)
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
			pixels, start := in["inputs.pixel_values"], in["inputs.decoder_input_ids"]
			if pixels == nil || start == nil {
				return usagef("inputs %s needs inputs.pixel_values and inputs.decoder_input_ids", inPath)
			}
			p := promptLen
			if p < 1 || int64(p) > start.Size(1) {
				return usagef("prompt-len %d: decoder_input_ids has %d columns", p, start.Size(1))
			}
			ids, err := start.Narrow(1, 0, int64(p)).Contiguous().Int64s()
			if err != nil {
				return usagef("inputs.decoder_input_ids: %v", err)
			}
			rows := make([][]int64, start.Size(0))
			for i := range rows {
				rows[i] = ids[i*p : (i+1)*p]
			}
			lm, err := load.load(a, false)
			if err != nil {
				return err
			}
			defer lm.Close()
			s := torch.NewScope()
			defer s.Close()
			var seqs [][]captioner.Sequence
			torch.NoGrad(func() {
				img := lm.Model.EncodeImage(s.Ref(pixels), false)
				if err = img.Err(); err == nil {
					seqs, err = captioner.Generate(context.Background(), lm.Model, img, rows, rowKeys(len(rows)), st)
				}
			})
			if err != nil {
				return err
			}
			width := 0
			for _, ss := range seqs {
				width = max(width, len(ss[0].IDs))
			}
			flat := make([]int64, len(seqs)*width)
			for i, ss := range seqs {
				copy(flat[i*width:], ss[0].IDs)
				a.printf("%d\t%v\n", i, ss[0].IDs)
			}
			out := map[string]*torch.Tensor{"generate.ids": s.Track(torch.FromInt64(flat, int64(len(seqs)), int64(width)))}
			return blip.WriteTensors(outPath, out, map[string]string{"mode": string(st.Mode),
				"settings": settingsJSON(st), "capfilt.version": capfiltVersion()})
		},
	}
	f := cmd.Flags()
	load.AddFlags(f)
	gen.AddFlags(f)
	files.AddFlags(f)
	f.IntVar(&promptLen, "prompt-len", 4, "how many columns of inputs.decoder_input_ids start the decoding")
	perInvocation(f, "prompt-len")
	return cmd
}

// rowKeys name the rows of an input file for the sampler's seeds: "0", "1", ...
func rowKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = strconv.Itoa(i)
	}
	return keys
}
