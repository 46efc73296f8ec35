package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/capfilt/capfilt/synth"
)

// synthOptions are the world to write. Every flag says what this one call writes, so
// none is read from the environment or capfilt.yaml; the names avoid the settings that
// mean something else elsewhere (--seed is the nucleus sampler's, --per-shard and
// --image-size sample-shards').
type synthOptions struct {
	Out                                        string
	Images, Annotated, Test, Captions, Partial int
	ImageSide, ShardSize                       int
	Noise, Incomplete, JPEG                    float64
	NoiseMix                                   string
	Seed                                       uint64
	Overwrite                                  bool
}

func (o *synthOptions) AddFlags(f *pflag.FlagSet) {
	d := synth.DefaultWorldConfig("")
	f.StringVar(&o.Out, "out", "", "file or folder to write")
	f.IntVar(&o.Images, "images", d.WebImages, "web images")
	f.IntVar(&o.Annotated, "annotated", d.AnnotatedImages, "images of the clean annotated set")
	f.IntVar(&o.Test, "test", d.TestImages, "images of the held-out test set")
	f.IntVar(&o.Captions, "captions", d.CaptionsPerImage, "captions per annotated and test image")
	f.IntVar(&o.Partial, "partial", d.PartialCaptions, "of an annotated image's captions, how many are true but incomplete")
	f.Float64Var(&o.Noise, "noise", d.Noise, "share of web captions that are noise (wrong attribute, another image's, junk)")
	f.Float64Var(&o.Incomplete, "incomplete", d.Incomplete, "share of web captions that are true but incomplete")
	f.StringVar(&o.NoiseMix, "noise-mix", d.NoiseMix.String(), "how the noise splits over its kinds (shares, normalised)")
	f.IntVar(&o.ImageSide, "image-side", d.ImageSize, "side of every image in pixels (a multiple of 16, at least 48)")
	f.IntVar(&o.ShardSize, "shard-size", d.PerShard, "web samples per tar")
	f.Float64Var(&o.JPEG, "jpeg", d.JPEGShare, "share of images coded as JPEG (the rest PNG)")
	f.Uint64Var(&o.Seed, "world-seed", 0, "seed of every draw of the world")
	f.BoolVar(&o.Overwrite, "replace-world", false, "replace a world already in --out (only the world's own files)")
	perInvocation(f, synthFlags...)
}

var synthFlags = []string{"out", "images", "annotated", "test", "captions", "partial", "noise", "incomplete",
	"noise-mix", "image-side", "shard-size", "jpeg", "world-seed", "replace-world"}

// synthFields maps WorldConfig's fields (synth.ConfigError.Field) to this command's flags.
var synthFields = map[string]string{
	"out": "out", "web_images": "images", "annotated_images": "annotated", "test_images": "test",
	"captions_per_image": "captions", "partial_captions": "partial", "noise": "noise", "incomplete": "incomplete",
	"noise_mix": "noise-mix", "image_size": "image-side", "per_shard": "shard-size", "jpeg_share": "jpeg",
}

// worldConfig checks the options and makes the world's config; a bad value is an error
// naming its flag.
func (o synthOptions) worldConfig() (synth.WorldConfig, error) {
	cfg := synth.DefaultWorldConfig(o.Out)
	cfg.WebImages, cfg.AnnotatedImages, cfg.TestImages = o.Images, o.Annotated, o.Test
	cfg.CaptionsPerImage, cfg.PartialCaptions, cfg.ImageSize, cfg.PerShard = o.Captions, o.Partial, o.ImageSide, o.ShardSize
	cfg.Noise, cfg.Incomplete, cfg.JPEGShare, cfg.Seed, cfg.Overwrite = o.Noise, o.Incomplete, o.JPEG, o.Seed, o.Overwrite
	var err error
	if cfg.NoiseMix, err = synth.ParseNoiseMix(o.NoiseMix); err != nil {
		return cfg, usagef("noise-mix (from --noise-mix): %v", err)
	}
	if err := cfg.Validate(); err != nil {
		var ce *synth.ConfigError
		if !errors.As(err, &ce) {
			return cfg, usagef("%v", err)
		}
		if ce.Field == "out" {
			return cfg, usagef("no output folder given (--out)")
		}
		return cfg, usagef("%s (from --%s): %v", synthFields[ce.Field], synthFields[ce.Field], ce.Err)
	}
	return cfg, nil
}

func newSynthCommand(a *app) *cobra.Command {
	var o synthOptions
	cmd := &cobra.Command{
		Use:   "synth --out DIR [--images N] [--noise 0.4] [--world-seed S]",
		Short: "Write a synthetic web with known noise, a clean annotated set, a test set and their vocabulary",
		Long: `Writes a world where the truth is known, to measure a captioner, a filter and pretraining on:

  DIR/web/00000.tar ...        the web set: WebDataset tars in img2dataset's layout (KEY.jpg or
                               KEY.png, KEY.txt, KEY.json); each KEY.json holds the truth under
                               "synth" (the scene, its clean caption, the caption's kind)
  DIR/annotated/annotations.json  a small clean set, COCO-style, several true captions per image
  DIR/test/annotations.json    a held-out test set, COCO-style, several full references per image
  DIR/vocab.txt                the world's WordPiece vocabulary
  DIR/model_config.json        the tiny BLIP config.json the world is sized for
  DIR/world.json               what the world holds, counts by caption kind, the seed

Each image shows one to three shapes (circle, square, triangle, diamond, cross; eight
colours; small or large) in the cells of a 3×3 grid, on a plain, striped, checkered or
dotted background. Each web caption is full (true, every attribute), incomplete (true,
attributes left out, as alt text often is) or noise: a wrong attribute, another image's
caption, or alt-text junk (file names, shop slogans, near-empty text). --noise and
--incomplete are exact shares of the web captions; --noise-mix splits the noise.
The same flags write the same bytes. The flags describe this one world: none is read
from the environment or capfilt.yaml.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := o.worldConfig()
			if err != nil {
				return err
			}
			total := cfg.WebImages + cfg.AnnotatedImages + cfg.TestImages
			bar := progressbar.NewOptions(total, progressbar.OptionSetWriter(a.stderr), progressbar.OptionSetDescription("synth"),
				progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionSetItsString("img"),
				progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionSetWidth(24),
				progressbar.OptionOnCompletion(func() { fmt.Fprintln(a.stderr) }))
			cfg.Progress = func(p synth.Progress) {
				bar.Describe("synth " + p.Set)
				bar.Set(p.Done)
			}
			start := time.Now()
			w, err := synth.Generate(cmd.Context(), cfg)
			if err != nil {
				if errors.Is(err, synth.ErrWorldExists) {
					return usagef("%v: pass --replace-world to replace it", err)
				}
				return err
			}
			bar.Finish()
			a.printWorld(w, time.Since(start))
			return nil
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

// printWorld is the summary on stdout: what each set holds, the web captions by kind.
func (a *app) printWorld(w *synth.World, took time.Duration) {
	c := w.Config
	a.printf("wrote a synthetic world to %s in %.1fs (world seed %d, %d×%d images)\n", w.Dir, took.Seconds(), c.Seed, c.ImageSize, c.ImageSize)
	a.printf("  web        %6d images in %d shards: %s\n", len(w.WebKeys()), len(w.WebShards), w.WebPattern)
	noisy := 0
	for _, k := range synth.CaptionKinds {
		n := w.Counts[k]
		if k.Noisy() {
			noisy += n
		}
		label := "true "
		if k.Noisy() {
			label = "noise"
		}
		a.printf("    %s %-16s %6d (%.1f%%)\n", label, k, n, 100*float64(n)/float64(len(w.WebKeys())))
	}
	a.printf("    noise %-16s %6d (%.1f%%)\n", "in all", noisy, 100*float64(noisy)/float64(len(w.WebKeys())))
	for _, s := range []struct {
		name string
		set  synth.ImageSet
	}{{"annotated", w.Annotated}, {"test", w.Test}} {
		captions := 0
		for _, img := range s.set.Images {
			captions += len(img.Captions)
		}
		a.printf("  %-10s %6d images, %d captions: %s\n", s.name, len(s.set.Images), captions, s.set.Annotations)
	}
	a.printf("  vocab      %6d tokens (+[DEC] [ENC]), longest caption %d tokens: %s\n", len(synth.WorldVocab()), w.MaxCaptionTokens, w.VocabFile)
	a.printf("  model      %s (tiny BLIP sized for the world)\n", w.ModelConfigFile)
	a.printf("  manifest   %s\n", filepath.Join(w.Dir, "world.json"))
}
