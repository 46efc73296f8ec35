package main

import (
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/capfilt/capfilt/blip"
	"github.com/capfilt/capfilt/blip/tokenizer"
	"github.com/capfilt/capfilt/modelstage"
	"github.com/capfilt/capfilt/synth"
)

// newModelRandomCommand makes a checkpoint to run the pipeline with where no real one can
// be downloaded: deterministic random weights, so every machine gets the same model.
func newModelRandomCommand(a *app) *cobra.Command {
	var preset, out, vocab string
	var seed uint64
	cmd := &cobra.Command{
		Use:   "random --preset tiny --out DIR [--weights-seed N] [--vocab vocab.txt]",
		Short: "Write a BLIP checkpoint with deterministic random weights (to try the pipeline without a download)",
		Long: `Writes an HF-layout directory (config.json, model.safetensors, vocab.txt) holding every part
of a BLIP model (ViT, text encoder and decoder, ITC and ITM heads), so one file serves as
both captioner and filter. Its captions are noise and its scores hover around 0.49: it is
for trying and timing the pipeline, not for cleaning data.

The tiny preset brings its own vocabulary (the words of capfilt sample-shards); base and
large need --vocab, a bert-base-uncased vocab.txt.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return usagef("no output folder given (--out)")
			}
			cfg, err := blip.Preset(preset)
			if err != nil {
				return usagef("%v", err)
			}
			var tok *tokenizer.Tokenizer
			switch {
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
			params, err := modelstage.WriteRandomModel(out, cfg, tok, seed)
			if err != nil {
				return err
			}
			a.printf("wrote a random %s BLIP model (%.2f M parameters, seed %d) to %s\n", preset, float64(params)/1e6, seed, out)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&preset, "preset", "tiny", "model size: tiny, base or large")
	addOutFlag(f, &out)
	f.Uint64Var(&seed, "weights-seed", 0, "seed of the random weights")
	f.StringVar(&vocab, "vocab", "", "vocab.txt to use (required for base and large)")
	perInvocation(f, "preset", "weights-seed", "vocab")
	return cmd
}

// sampleOptions are the sample shards to write.
type sampleOptions struct {
	Shards, PerShard, ImageSize int
	Mismatch, Corrupt           float64
	SceneSeed                   uint64
}

func (o *sampleOptions) AddFlags(f *pflag.FlagSet) {
	f.IntVar(&o.Shards, "shards", 4, "how many shards")
	f.IntVar(&o.PerShard, "per-shard", 32, "samples per shard")
	f.IntVar(&o.ImageSize, "image-size", 96, "width and height of the images")
	f.Float64Var(&o.Mismatch, "mismatch", 0.3, "share of captions that describe another picture")
	f.Float64Var(&o.Corrupt, "corrupt", 0.05, "share of images cut short")
	f.Uint64Var(&o.SceneSeed, "scene-seed", 0, "seed of the scenes")
	perInvocation(f, "shards", "per-shard", "image-size", "mismatch", "corrupt", "scene-seed")
}

func newSampleShardsCommand(a *app) *cobra.Command {
	var o sampleOptions
	var out string
	cmd := &cobra.Command{
		Use:   "sample-shards --out DIR [--shards N] [--per-shard M]",
		Short: "Write small WebDataset shards of rendered shapes with captions, to try capfilt on",
		Long: `Writes DIR/00000.tar, DIR/00001.tar, ... in img2dataset's layout: KEY.jpg or KEY.png (a
coloured shape on a plain background), KEY.txt (its caption, in words the tiny model
knows; --mismatch of them describe another picture) and KEY.json (with the truth).
--corrupt of the images are cut short, so runs have bad samples to skip and count.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return usagef("no output folder given (--out)")
			}
			n, per, size := o.Shards, o.PerShard, o.ImageSize
			if n < 1 || per < 1 || size < 8 {
				return usagef("shards %d, per-shard %d, image-size %d: want at least 1, 1 and 8", n, per, size)
			}
			mismatch, corrupt := o.Mismatch, o.Corrupt
			if mismatch < 0 || mismatch > 1 || corrupt < 0 || corrupt > 1 {
				return usagef("mismatch %g, corrupt %g: want rates between 0 and 1", mismatch, corrupt)
			}
			if err := os.MkdirAll(out, 0o755); err != nil {
				return usagef("out %s: %v", out, err)
			}
			paths, err := synth.WriteSampleShards(out, n, synth.SampleOptions{PerShard: per, Width: size, Height: size,
				MismatchRate: mismatch, CorruptRate: corrupt, Seed: o.SceneSeed})
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
	addOutFlag(f, &out)
	o.AddFlags(f)
	return cmd
}
