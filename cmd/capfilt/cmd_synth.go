package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/capfilt/capfilt/synth"
)

func newSynthCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "synth --out DIR [--images N] [--noise 0.4] [--seed S]",
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
The same settings and seed write the same bytes.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := a.synthConfig(cmd)
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
					return usagef("%v: pass --overwrite to replace it", err)
				}
				return err
			}
			bar.Finish()
			a.printWorld(w, time.Since(start), a.source(cmd, "seed"))
			return nil
		},
	}
	d := synth.DefaultWorldConfig("")
	f := cmd.Flags()
	f.String("out", "", "folder to write the world to")
	f.Int("images", d.WebImages, "web images")
	f.Int("annotated", d.AnnotatedImages, "images of the clean annotated set")
	f.Int("test", d.TestImages, "images of the held-out test set")
	f.Int("captions", d.CaptionsPerImage, "captions per annotated and test image")
	f.Int("partial", d.PartialCaptions, "of an annotated image's captions, how many are true but incomplete")
	f.Float64("noise", d.Noise, "share of web captions that are noise (wrong attribute, another image's, junk)")
	f.Float64("incomplete", d.Incomplete, "share of web captions that are true but incomplete")
	f.String("noise-mix", d.NoiseMix.String(), "how the noise splits over its kinds (shares, normalised)")
	f.Int("image-size", d.ImageSize, "side of every image in pixels (a multiple of 16, at least 48)")
	f.Int("per-shard", d.PerShard, "web samples per tar")
	f.Float64("jpeg", d.JPEGShare, "share of images coded as JPEG (the rest PNG)")
	f.Int64("seed", 0, "seed of every draw")
	f.Bool("overwrite", false, "replace a world already in --out (only the world's own files)")
	return cmd
}

// synthFields maps WorldConfig's fields (synth.ConfigError.Field) to this command's flags.
var synthFields = map[string]string{
	"out": "out", "web_images": "images", "annotated_images": "annotated", "test_images": "test",
	"captions_per_image": "captions", "partial_captions": "partial", "noise": "noise", "incomplete": "incomplete",
	"noise_mix": "noise-mix", "image_size": "image-size", "per_shard": "per-shard", "jpeg_share": "jpeg",
}

// synthConfig reads the command's settings strictly: a value that does not parse is an
// error naming the setting and where it came from, and so is one out of range.
func (a *app) synthConfig(cmd *cobra.Command) (synth.WorldConfig, error) {
	cfg := synth.DefaultWorldConfig(a.v.GetString("out"))
	var errs []error
	integer := func(name string, dst *int) {
		s := strings.TrimSpace(fmt.Sprint(a.v.Get(name)))
		n, err := strconv.Atoi(s)
		if err != nil {
			errs = append(errs, usagef("%s %q (from %s): not a whole number", name, s, a.source(cmd, name)))
		}
		*dst = n
	}
	share := func(name string, dst *float64) {
		s := strings.TrimSpace(fmt.Sprint(a.v.Get(name)))
		x, err := strconv.ParseFloat(s, 64)
		if err != nil {
			errs = append(errs, usagef("%s %q (from %s): not a number", name, s, a.source(cmd, name)))
		}
		*dst = x
	}
	integer("images", &cfg.WebImages)
	integer("annotated", &cfg.AnnotatedImages)
	integer("test", &cfg.TestImages)
	integer("captions", &cfg.CaptionsPerImage)
	integer("partial", &cfg.PartialCaptions)
	integer("image-size", &cfg.ImageSize)
	integer("per-shard", &cfg.PerShard)
	share("noise", &cfg.Noise)
	share("incomplete", &cfg.Incomplete)
	share("jpeg", &cfg.JPEGShare)
	seed := strings.TrimSpace(fmt.Sprint(a.v.Get("seed")))
	var err error
	if cfg.Seed, err = strconv.ParseUint(seed, 10, 64); err != nil {
		errs = append(errs, usagef("seed %q (from %s): not a whole number 0 or more", seed, a.source(cmd, "seed")))
	}
	if cfg.NoiseMix, err = synth.ParseNoiseMix(a.v.GetString("noise-mix")); err != nil {
		errs = append(errs, usagef("noise-mix (from %s): %v", a.source(cmd, "noise-mix"), err))
	}
	cfg.Overwrite = a.v.GetBool("overwrite")
	if len(errs) > 0 {
		return cfg, errs[0]
	}
	if err := cfg.Validate(); err != nil {
		var ce *synth.ConfigError
		if errors.As(err, &ce) {
			name := synthFields[ce.Field]
			if name == "out" {
				return cfg, usagef("no output folder given (--out)")
			}
			return cfg, usagef("%s (from %s): %v", name, a.source(cmd, name), ce.Err)
		}
		return cfg, usagef("%v", err)
	}
	return cfg, nil
}

// printWorld is the summary on stdout: what each set holds, the web captions by kind.
// The seed's source is said because "seed" is also the nucleus sampler's setting in a
// capfilt.yaml.
func (a *app) printWorld(w *synth.World, took time.Duration, seedSource string) {
	c := w.Config
	a.printf("wrote a synthetic world to %s in %.1fs (seed %d from %s, %d×%d images)\n", w.Dir, took.Seconds(), c.Seed, seedSource, c.ImageSize, c.ImageSize)
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
