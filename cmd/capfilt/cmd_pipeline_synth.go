package main

import (
	"os"

	"github.com/capfilt/capfilt/blip/tokenizer"

	"github.com/spf13/cobra"

	"github.com/capfilt/capfilt/blip"
	"github.com/capfilt/capfilt/synth"
)

// newModelRandomCommand makes a checkpoint to run the pipeline with where no real one can
// be downloaded: deterministic random weights, so every machine gets the same model.
func newModelRandomCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "random --preset tiny --out DIR [--seed N] [--vocab vocab.txt]",
		Short: "Write a BLIP checkpoint with deterministic random weights (to try the pipeline without a download)",
		Long: `Writes an HF-layout directory (config.json, model.safetensors, vocab.txt) holding every part
of a BLIP model (ViT, text encoder and decoder, ITC and ITM heads), so one file serves as
both captioner and filter. Its captions are noise and its scores hover around 0.49: it is
for trying and timing the pipeline, not for cleaning data.

The tiny preset brings its own vocabulary (the words of capfilt sample-shards); base and
large need --vocab, a bert-base-uncased vocab.txt.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			preset, out := a.v.GetString("preset"), a.v.GetString("out")
			if out == "" {
				return usagef("no output folder given (--out)")
			}
			cfg, err := blip.Preset(preset)
			if err != nil {
				return usagef("%v", err)
			}
			var tok *tokenizer.Tokenizer
			switch vocab := a.v.GetString("vocab"); {
			case vocab != "":
				if tok, err = tokenizer.Load(vocab); err != nil {
					return usagef("vocab %s: %v", vocab, err)
				}
			case preset == "tiny":
				if tok, err = tokenizer.New(synth.TinyVocab(), tokenizer.BertUncased); err != nil {
					return err
				}
			default:
				return usagef("preset %s needs --vocab (a bert-base-uncased vocab.txt): only tiny brings its own", preset)
			}
			if err := tok.SetDecEncIDs(cfg.Text.BosID, cfg.Text.EncID); err != nil {
				return usagef("vocab: %v", err)
			}
			if tok.VocabSize() > cfg.Text.VocabSize {
				return usagef("vocab has %d tokens, more than the %s model's %d", tok.VocabSize(), preset, cfg.Text.VocabSize)
			}
			seed := uint64(a.v.GetInt64("seed"))
			params, err := writeRandomModel(out, cfg, tok, seed)
			if err != nil {
				return err
			}
			a.printf("wrote a random %s BLIP model (%.2f M parameters, seed %d) to %s\n", preset, float64(params)/1e6, seed, out)
			return nil
		},
	}
	f := cmd.Flags()
	f.String("preset", "tiny", "model size: tiny, base or large")
	f.String("out", "", "folder to write")
	f.Int64("seed", 0, "seed of the weights")
	f.String("vocab", "", "vocab.txt to use (required for base and large)")
	return cmd
}

func newSampleShardsCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sample-shards --out DIR [--shards N] [--per-shard M]",
		Short: "Write small WebDataset shards of rendered shapes with captions, to try capfilt on",
		Long: `Writes DIR/00000.tar, DIR/00001.tar, ... in img2dataset's layout: KEY.jpg or KEY.png (a
coloured shape on a plain background), KEY.txt (its caption, in words the tiny model
knows; --mismatch of them describe another picture) and KEY.json (with the truth).
--corrupt of the images are cut short, so runs have bad samples to skip and count.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := a.v.GetString("out")
			if out == "" {
				return usagef("no output folder given (--out)")
			}
			n, per, size := a.v.GetInt("shards"), a.v.GetInt("per-shard"), a.v.GetInt("image-size")
			if n < 1 || per < 1 || size < 8 {
				return usagef("shards %d, per-shard %d, image-size %d: want at least 1, 1 and 8", n, per, size)
			}
			mismatch, corrupt := a.v.GetFloat64("mismatch"), a.v.GetFloat64("corrupt")
			if mismatch < 0 || mismatch > 1 || corrupt < 0 || corrupt > 1 {
				return usagef("mismatch %g, corrupt %g: want rates between 0 and 1", mismatch, corrupt)
			}
			if err := os.MkdirAll(out, 0o755); err != nil {
				return usagef("out %s: %v", out, err)
			}
			paths, err := synth.WriteSampleShards(out, n, synth.SampleOptions{PerShard: per, Width: size, Height: size,
				MismatchRate: mismatch, CorruptRate: corrupt, Seed: uint64(a.v.GetInt64("seed"))})
			if err != nil {
				return err
			}
			a.printf("wrote %d shards of %d samples to %s (%s ... %s)\n", len(paths), per, out, paths[0], paths[len(paths)-1])
			if len(paths) > 1 {
				a.printf("input pattern: '%s/{%05d..%05d}.tar'\n", out, 0, len(paths)-1)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.String("out", "", "folder to write the shards to")
	f.Int("shards", 4, "how many shards")
	f.Int("per-shard", 32, "samples per shard")
	f.Int("image-size", 96, "width and height of the images")
	f.Float64("mismatch", 0.3, "share of captions that describe another picture")
	f.Float64("corrupt", 0.05, "share of images cut short")
	f.Int64("seed", 0, "seed of the scenes")
	return cmd
}

// writeRandomModel writes a BLIP model with every part and deterministic random weights,
// and its tokenizer, as an HF directory; it returns the parameter count.
func writeRandomModel(dir string, cfg blip.Config, tok *tokenizer.Tokenizer, seed uint64) (int64, error) {
	m, err := blip.New(cfg, blip.AllParts())
	if err != nil {
		return 0, err
	}
	defer m.Close()
	if err := m.InitDeterministic(seed); err != nil {
		return 0, err
	}
	if err := m.SaveHF(dir, tok); err != nil {
		return 0, err
	}
	var params int64
	for _, n := range m.NumParams() {
		params += n
	}
	return params, nil
}
