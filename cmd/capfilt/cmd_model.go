package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/capfilt/capfilt/blip"
	"github.com/capfilt/capfilt/blip/tokenizer"
	"github.com/capfilt/capfilt/torch"
)

func newModelCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "model",
		Short: "Inspect, run and convert BLIP checkpoints",
	}
	cmd.AddCommand(newModelInspectCommand(a), newModelForwardCommand(a), newModelLossCommand(a), newModelGenerateCommand(a), newModelConvertCommand(a),
		newModelRandomCommand(a))
	return cmd
}

func newModelInspectCommand(a *app) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "inspect PATH",
		Short: "Show a checkpoint's config, parameter counts, heads and key report",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := args[0]
			if _, err := os.Stat(path); err != nil {
				return usagef("model %s: %v", path, err)
			}
			m, rep, err := blip.Load(path, blip.LoadOptions{AllowPartial: true})
			if err != nil {
				return fmt.Errorf("inspect %s: %w", path, err)
			}
			defer m.Close()
			counts := m.NumParams()
			if asJSON {
				enc := json.NewEncoder(a.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(map[string]any{"config": m.Config, "params": counts, "report": rep, "strict_ok": rep.Clean()})
			}
			c := m.Config
			a.printf("checkpoint  %s (%s, %s names)\n", path, rep.Format, rep.Naming)
			a.printf("config      %s\n", rep.ConfigSource)
			a.printf("vision      ViT %d/%d layers/%d heads, MLP %d, %d px, patch %d, LN eps %g\n", c.Vision.HiddenSize, c.Vision.NumLayers,
				c.Vision.NumHeads, c.Vision.IntermediateSize, c.Vision.ImageSize, c.Vision.PatchSize, c.Vision.LayerNormEps)
			a.printf("text        %d/%d layers/%d heads, FFN %d, vocab %d, max pos %d, cross-attn from %d\n", c.Text.HiddenSize, c.Text.NumLayers,
				c.Text.NumHeads, c.Text.IntermediateSize, c.Text.VocabSize, c.Text.MaxPositions, c.Text.EncoderHiddenSize)
			a.printf("ids         pad %d, [CLS] %d, [SEP] %d, [DEC] %d, [ENC] %d; ITC dim %d\n", c.Text.PadID, c.Text.ClsID, c.Text.SepID, c.Text.BosID, c.Text.EncID, c.EmbedDim)
			a.printf("parts       %s\n", strings.Join(rep.Parts, ", "))
			parts := make([]string, 0, len(counts))
			var total int64
			for p := range counts {
				parts = append(parts, p)
				total += counts[p]
			}
			sort.Strings(parts)
			for _, p := range parts {
				a.printf("  %-14s %10.2f M\n", p, float64(counts[p])/1e6)
			}
			a.printf("  %-14s %10.2f M\n", "total", float64(total)/1e6)
			a.printf("keys        %d loaded, %d missing, %d unexpected, %d shape-mismatched, %d resized, %d ignored, %d converted\n",
				rep.Loaded, len(rep.Missing), len(rep.Unexpected), len(rep.Mismatched), len(rep.Resized), len(rep.Ignored), len(rep.Converted))
			for _, l := range []struct {
				what string
				v    []string
			}{{"missing", rep.Missing}, {"unexpected", rep.Unexpected}, {"mismatched", rep.Mismatched}, {"resized", rep.Resized}, {"ignored", rep.Ignored}, {"warning", rep.Warnings}} {
				for _, s := range l.v {
					a.printf("  %-10s %s\n", l.what, s)
				}
			}
			if rep.Clean() {
				a.printf("strict load OK\n")
			} else {
				a.printf("strict load FAILS (use --allow-partial to run it anyway)\n")
			}
			return nil
		},
	}
	addJSONFlag(cmd.Flags(), &asJSON)
	return cmd
}

// readInputs maps the input file and checks its tensors' names.
func readInputs(path string) (map[string]*torch.Tensor, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, usagef("inputs %s: %v", path, err)
	}
	in, err := blip.ReadTensors(path)
	if err != nil {
		return nil, usagef("inputs %s: %v", path, err)
	}
	// Names may carry the "inputs." prefix or not.
	for name, t := range in {
		if !strings.HasPrefix(name, "inputs.") {
			if _, dup := in["inputs."+name]; !dup {
				in["inputs."+name] = t
			}
		}
	}
	return in, nil
}

// tensorFiles are the input and output of model forward and generate.
type tensorFiles struct{ In, Out string }

func (o *tensorFiles) AddFlags(f *pflag.FlagSet) {
	f.StringVar(&o.In, "inputs", "", "input tensors (safetensors)")
	addOutFlag(f, &o.Out)
	perInvocation(f, "inputs")
}

func newModelForwardCommand(a *app) *cobra.Command {
	var load loadOptions
	var files tensorFiles
	cmd := &cobra.Command{
		Use:   "forward --model PATH --inputs IN.safetensors --out OUT.safetensors",
		Short: "Run every head of a checkpoint on given inputs and write the outputs",
		Long: `Reads inputs.pixel_values [B,3,S,S] float32 (normalised), optional inputs.pixel_values_hires,
inputs.input_ids [B,T] int64 ([CLS] first) and inputs.attention_mask [B,T], and writes what the
checkpoint's parts allow: vision.last_hidden_state, vision.last_hidden_state_hires,
text_unimodal.last_hidden_state, itc.image_feat, itc.text_feat, itc.cosine, itm.logits ([ENC]
first), itm.prob, decoder.logits ([DEC] first).`,
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
			lm, err := load.load(a, false)
			if err != nil {
				return err
			}
			defer lm.Close()
			s := torch.NewScope()
			defer s.Close()
			fin := blip.ForwardInputs{
				PixelValues: in["inputs.pixel_values"], PixelValuesHires: in["inputs.pixel_values_hires"],
				InputIDs: in["inputs.input_ids"], AttentionMask: in["inputs.attention_mask"],
			}
			if fin.PixelValues == nil && fin.InputIDs == nil {
				return usagef("inputs %s has neither inputs.pixel_values nor inputs.input_ids", inPath)
			}
			out, err := lm.Model.ReferenceOutputs(s, fin)
			if err != nil {
				return err
			}
			if err := blip.WriteTensors(outPath, out, map[string]string{"capfilt.version": capfiltVersion(), "model": load.Model}); err != nil {
				return err
			}
			names := make([]string, 0, len(out))
			for n := range out {
				names = append(names, n)
			}
			sort.Strings(names)
			for _, n := range names {
				a.printf("%-36s %v\n", n, out[n].Shape())
			}
			return nil
		},
	}
	load.AddFlags(cmd.Flags())
	files.AddFlags(cmd.Flags())
	return cmd
}

func newModelConvertCommand(a *app) *cobra.Command {
	var tokPath string
	var allowPartial bool
	cmd := &cobra.Command{
		Use:   "convert IN OUT",
		Short: "Convert an original .pth to an HF-layout directory, or back (OUT ending in .pth)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			in, out := args[0], args[1]
			if _, err := os.Stat(in); err != nil {
				return usagef("model %s: %v", in, err)
			}
			m, rep, err := blip.Load(in, blip.LoadOptions{AllowPartial: allowPartial})
			if err != nil {
				return err
			}
			defer m.Close()
			if filepath.Ext(out) == ".pth" {
				if err := m.SaveOriginal(out); err != nil {
					return err
				}
			} else {
				var tok *tokenizer.Tokenizer
				if t, err := blip.LoadModelTokenizer(tokPath, in, m.Config); err == nil {
					tok = t
				} else {
					a.log.Warn("no tokenizer copied", "reason", err)
				}
				if err := m.SaveHF(out, tok); err != nil {
					return err
				}
			}
			a.printf("converted %s (%s names, %d tensors) to %s\n", in, rep.Naming, rep.Loaded, out)
			return nil
		},
	}
	addAllowPartialFlag(cmd.Flags(), &allowPartial)
	addTokenizerFlag(cmd.Flags(), &tokPath)
	return cmd
}
