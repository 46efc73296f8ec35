package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/capfilt/capfilt/filter"
	"github.com/capfilt/capfilt/pipeline/spec"
)

// scoreRequest is one line of --pairs: an image and the captions to score against it.
type scoreRequest struct {
	Image  string      `json:"image"`
	Text   string      `json:"text,omitempty"`
	Texts  []string    `json:"texts,omitempty"`
	Source spec.Source `json:"source,omitempty"`
	line   int
}

type scoreCommand struct {
	load    loadOptions
	rule    ruleOptions
	scoring scoringOptions
	Image   string
	Texts   []string
	Pairs   string

	r     spec.AcceptRule
	first spec.ITMFirstToken
}

func newScoreCommand(a *app) *cobra.Command {
	c := &scoreCommand{}
	cmd := &cobra.Command{
		Use:   `score --model PATH --image FILE --text "..." [--text ...] | --pairs FILE.jsonl`,
		Short: "Score captions against an image with the BLIP filter (ITM probability, ITC cosine, decision)",
		Long: `Prints each caption with its ITM match probability (softmax of the ITM head on [ENC],
or on [CLS] with --itm-first-token cls, as HF's BlipForImageTextRetrieval computes it), its
ITC cosine and whether the accept rule keeps it. --pairs reads JSON lines
{"image": PATH, "text": "..." | "texts": [...], "source": "web"|"synthetic"|"human"}
and prints JSON lines.`,
		Args: cobra.NoArgs,
		PreRunE: func(*cobra.Command, []string) (err error) {
			if _, _, err = c.load.resolve(a); err != nil {
				return err
			}
			if c.r, err = c.rule.resolve(a); err != nil {
				return err
			}
			c.first, err = c.scoring.resolve(a)
			return err
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			var reqs []scoreRequest
			var err error
			rule, pairs, texts, image := c.r, c.Pairs, c.Texts, c.Image
			switch {
			case pairs != "" && (image != "" || len(texts) > 0):
				return usagef("give either --pairs or --image with --text, not both")
			case pairs != "":
				if reqs, err = readPairs(pairs); err != nil {
					return err
				}
			case image != "" && len(texts) > 0:
				reqs = []scoreRequest{{Image: image, Texts: texts, Source: spec.Web}}
			default:
				return usagef("give --image and at least one --text, or --pairs FILE.jsonl")
			}
			lm, err := c.load.load(a, true)
			if err != nil {
				return err
			}
			defer lm.Close()
			scorer, err := filter.NewScorer(lm.Model, lm.Tokenizer, filterOptions(c.first))
			if err != nil {
				return err
			}
			size := lm.Model.Config.Vision.ImageSize
			failed := 0
			for _, r := range reqs {
				pixels, _, errs := pixelBatch(cmd.Context(), []string{r.Image}, size)
				if e, bad := errs[0]; bad {
					a.log.Error("image skipped", "image", r.Image, "line", r.line, "err", e)
					failed++
					continue
				}
				scores, err := scorer.ScorePixels(cmd.Context(), pixels, [][]string{r.Texts})
				pixels.Free()
				if err != nil {
					return err
				}
				for i, sc := range scores[0] {
					keep, err := rule.Keep(r.Source, float64(sc.ITM), float64(sc.ITC))
					if err != nil {
						return fmt.Errorf("%s: %q: %w", r.Image, r.Texts[i], err)
					}
					if pairs != "" {
						line, _ := json.Marshal(map[string]any{"image": r.Image, "text": r.Texts[i], "source": r.Source,
							"itm": sc.ITM, "itc": sc.ITC, "keep": keep})
						a.printf("%s\n", line)
						continue
					}
					decision := "reject"
					if keep {
						decision = "keep"
					}
					a.printf("itm %.4f  itc %+.4f  %-6s  %s\n", sc.ITM, sc.ITC, decision, r.Texts[i])
				}
			}
			if failed > 0 {
				return fmt.Errorf("%d images could not be read", failed)
			}
			return nil
		},
	}
	f := cmd.Flags()
	c.load.AddFlags(f)
	c.rule.AddFlags(f)
	c.scoring.AddFlags(f)
	f.StringVar(&c.Image, "image", "", "image file or URL")
	f.StringArrayVar(&c.Texts, "text", nil, "caption to score (repeatable)")
	f.StringVar(&c.Pairs, "pairs", "", "JSON lines of images and captions to score")
	perInvocation(f, "image", "text", "pairs")
	return cmd
}

func readPairs(path string) ([]scoreRequest, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, usagef("pairs %s: %v", path, err)
	}
	defer f.Close()
	var out []scoreRequest
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for n := 1; sc.Scan(); n++ {
		if len(sc.Bytes()) == 0 {
			continue
		}
		var r scoreRequest
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return nil, usagef("pairs %s line %d: %v", path, n, err)
		}
		if r.Text != "" {
			r.Texts = append([]string{r.Text}, r.Texts...)
		}
		if r.Image == "" || len(r.Texts) == 0 {
			return nil, usagef("pairs %s line %d: needs \"image\" and \"text\" or \"texts\"", path, n)
		}
		if r.Source == "" {
			r.Source = spec.Web
		}
		switch r.Source {
		case spec.Web, spec.Synthetic, spec.Human:
		default:
			return nil, usagef("pairs %s line %d: source %q: want web, synthetic or human", path, n, r.Source)
		}
		r.line = n
		out = append(out, r)
	}
	if err := sc.Err(); err != nil {
		return nil, usagef("pairs %s: %v", path, err)
	}
	return out, nil
}
