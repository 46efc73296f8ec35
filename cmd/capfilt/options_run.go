package main

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/spf13/pflag"

	"github.com/capfilt/capfilt/blip"
	"github.com/capfilt/capfilt/coordinator"
	"github.com/capfilt/capfilt/pipeline"
	"github.com/capfilt/capfilt/shards"
)

// runOptions are everything that decides a run's output (pipeline.RunSettings): inputs,
// output, models, generation, accept rule, scoring, queue, input columns, output format.
type runOptions struct {
	Name           string
	Inputs         []string
	Output         string
	model          modelOptions
	CaptionerModel string
	FilterModel    string
	Columns        shards.ParquetColumns
	MaxPixels      int64
	Human          bool
	OutputFormat   string
	OmitImages     bool
	WithRejected   bool
	gen            generationOptions
	rule           ruleOptions
	scoring        scoringOptions
	queue          queueOptions
}

func (o *runOptions) AddFlags(f *pflag.FlagSet) {
	addRunNameFlag(f, &o.Name)
	f.Var((*patternList)(&o.Inputs), "input", "input shards: patterns with brace ranges or globs, e.g. 's3://b/laion/{00000..00999}.tar' (repeatable, or comma-separated)")
	f.StringVar(&o.Output, "output", "", "output prefix: cleaned Parquet, stats and _manifest.json go under it")
	o.model.AddFlags(f)
	f.StringVar(&o.CaptionerModel, "captioner-model", "", "captioner checkpoint (default: --model)")
	f.StringVar(&o.FilterModel, "filter-model", "", "filter checkpoint (default: --model); the same file as the captioner shares its ViT pass")
	f.StringVar(&o.Columns.Image, "image-column", "", "Parquet input: the image bytes column (default: detected)")
	f.StringVar(&o.Columns.Caption, "caption-column", "", "Parquet input: the caption column (default: detected)")
	f.StringVar(&o.Columns.URL, "url-column", "", "Parquet input: the URL column (default: detected)")
	f.StringVar(&o.Columns.Key, "key-column", "", "Parquet input: the key column (default: detected, else <shard stem>/<row number>)")
	f.StringSliceVar(&o.Columns.Keep, "keep-columns", nil, "Parquet input: columns to carry into the output with their types, e.g. similarity,punsafe; * keeps every column the output does not hold")
	f.BoolVar(&o.Human, "human", false, "the input captions were written by annotators (COCO-style): kept as human captions, unfiltered unless --filter-human")
	f.Int64Var(&o.MaxPixels, "max-pixels", 0, "refuse images whose header declares more pixels (0: the default limit)")
	f.StringVar(&o.OutputFormat, "output-format", string(shards.OutputParquet), "cleaned shards as parquet (OUT/<stem>.parquet) or wds (WebDataset OUT/<stem>.tar: KEY.jpg, KEY.txt, KEY.json)")
	f.BoolVar(&o.OmitImages, "omit-images", false, "write captions and scores without the image bytes")
	f.BoolVar(&o.WithRejected, "with-rejected", false, "also write each image's rejected captions with their scores, for audit")
	o.gen.AddFlags(f)
	o.rule.AddFlags(f)
	o.scoring.AddFlags(f)
	o.queue.AddFlags(f)
}

// addOverwriteFlag declares --overwrite, for the commands that claim an output prefix.
func addOverwriteFlag(f *pflag.FlagSet, dst *bool) {
	f.BoolVar(dst, "overwrite", false, "take over an output that another run claimed or that holds other files: this run's outputs replace files of the same name")
	perInvocation(f, "overwrite")
}

// addRunNameFlag declares --run, the name of a run, for every command that names one.
func addRunNameFlag(f *pflag.FlagSet, dst *string) {
	f.StringVar(dst, "run", "", "run name: letters, digits, '-' and '_' (submit: required; run: default the output folder's name)")
}

// resolve parses and range-checks the settings. What needs the file system or the
// network (do the models exist, the inputs) is checked by check and by the coordinator.
func (o *runOptions) resolve(a *app, run string) (pipeline.RunSettings, pipeline.QueueConfig, error) {
	rs := pipeline.RunSettings{Run: run, Inputs: o.Inputs, Columns: o.Columns, MaxPixels: o.MaxPixels,
		HumanCaptions: o.Human, OmitImages: o.OmitImages, WithRejected: o.WithRejected, Version: capfiltVersion()}
	if run != "" {
		if err := pipeline.ValidateRunName(run); err != nil {
			return rs, pipeline.QueueConfig{}, a.bad("run", quote(run), "use 1 to 64 letters, digits, '-' or '_'")
		}
	}
	if o.Output != "" {
		out, err := coordinator.OutputURL(o.Output)
		if err != nil {
			return rs, pipeline.QueueConfig{}, a.bad("output", quote(o.Output), errors.Unwrap(err).Error())
		}
		rs.Output = out
	}
	if o.MaxPixels < 0 {
		return rs, pipeline.QueueConfig{}, a.bad("max-pixels", o.MaxPixels, "must be 0 (the default limit) or more")
	}
	if err := o.checkKeep(a); err != nil {
		return rs, pipeline.QueueConfig{}, err
	}
	var err error
	if rs.OutputFormat, err = shards.ParseOutputFormat(o.OutputFormat); err != nil {
		return rs, pipeline.QueueConfig{}, a.bad("output-format", quote(o.OutputFormat), "want parquet or wds")
	}
	if rs.OutputFormat == shards.OutputWDS && o.OmitImages {
		return rs, pipeline.QueueConfig{}, a.bad("output-format", quote(o.OutputFormat),
			"a WebDataset shard needs its images: drop omit-images, or write parquet")
	}
	if rs.ITMFirstToken, err = o.scoring.resolve(a); err != nil {
		return rs, pipeline.QueueConfig{}, err
	}
	if rs.Generation, err = o.gen.settings(a); err != nil {
		return rs, pipeline.QueueConfig{}, err
	}
	if rs.Rule, err = o.rule.resolve(a); err != nil {
		return rs, pipeline.QueueConfig{}, err
	}
	var qc pipeline.QueueConfig
	if rs.Queue, qc, err = o.queue.resolve(a); err != nil {
		return rs, qc, err
	}
	return rs, qc, nil
}

// checkKeep refuses a keep-columns list the readers would refuse at every shard; whether
// the columns exist is for the shards to say.
func (o *runOptions) checkKeep(a *app) error {
	keep := o.Columns.Keep
	seen := map[string]bool{}
	for _, name := range keep {
		switch {
		case name == "*" && len(keep) > 1:
			return a.bad("keep-columns", quote(strings.Join(keep, ",")), `"*" keeps every column and goes alone`)
		case strings.TrimSpace(name) == "":
			return a.bad("keep-columns", quote(strings.Join(keep, ",")), "an empty column name")
		case seen[strings.ToLower(name)]:
			return a.bad("keep-columns", quote(strings.Join(keep, ",")), quote(name)+" is named twice")
		}
		seen[strings.ToLower(name)] = true
	}
	return nil
}

// check makes sure the run names its inputs, output and models, and that the models
// and their tokenizers are there; it records them as absolute paths, since workers read
// them from where the run's settings say.
func (o *runOptions) check(rs *pipeline.RunSettings) error {
	switch {
	case len(rs.Inputs) == 0:
		return usagef("no input given (--input)")
	case rs.Output.IsZero():
		return usagef("no output given (--output)")
	case rs.Run == "":
		return usagef("no run name given (--run)")
	}
	for _, m := range []struct {
		path string
		dst  *pipeline.ModelSpec
	}{{o.CaptionerModel, &rs.Captioner}, {o.FilterModel, &rs.Filter}} {
		path := m.path
		if path == "" {
			path = o.model.Model
		}
		if path == "" {
			return usagef("no model given (--model, or --captioner-model and --filter-model)")
		}
		spec, err := modelSpec(path, o.model.Tokenizer)
		if err != nil {
			return err
		}
		*m.dst = spec
	}
	return nil
}

// modelSpec makes sure a checkpoint and its tokenizer are there, as absolute paths.
func modelSpec(path, tok string) (pipeline.ModelSpec, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return pipeline.ModelSpec{}, usagef("model %s: %v", path, err)
	}
	if _, err := os.Stat(abs); err != nil {
		return pipeline.ModelSpec{}, usagef("model %s: %v", path, errors.Unwrap(err))
	}
	spec := pipeline.ModelSpec{Path: abs}
	found, err := blip.TokenizerPath(tok, abs)
	if err != nil {
		return spec, loadError(err)
	}
	if tok != "" {
		spec.Tokenizer, _ = filepath.Abs(found)
	}
	return spec, nil
}

// patternList is --input: repeatable, and each value split at commas outside braces
// (so a brace list {a,b} stays one pattern), from the command line, the environment
// and capfilt.yaml alike.
type patternList []string

func (p *patternList) String() string {
	if len(*p) == 0 {
		return "[]"
	}
	return "[" + strings.Join(*p, ",") + "]"
}
func (p *patternList) Set(s string) error { return p.Append(s) }
func (p *patternList) Type() string       { return "patterns" }
func (p *patternList) GetSlice() []string { return append([]string(nil), *p...) }
func (p *patternList) Replace(s []string) error {
	*p = nil
	for _, v := range s {
		if err := p.Append(v); err != nil {
			return err
		}
	}
	return nil
}
func (p *patternList) Append(s string) error {
	parts := splitList(s)
	if len(parts) == 0 {
		return errors.New("no pattern")
	}
	*p = append(*p, parts...)
	return nil
}

// asUsage turns the coordinator's "what you asked cannot be done" into exit code 2.
func asUsage(err error) error {
	var inv *coordinator.InvalidError
	if errors.As(err, &inv) {
		return usagef("%v", inv.Err)
	}
	return err
}

var runNameUnsafe = regexp.MustCompile(`[^A-Za-z0-9_-]+`)

// defaultRunName names a run after its output folder, so rerunning the same command on a
// kept store dir resumes it.
func defaultRunName(output string) string {
	base := strings.TrimSuffix(output, "/")
	if i := strings.LastIndexAny(base, "/"); i >= 0 {
		base = base[i+1:]
	}
	name := strings.Trim(runNameUnsafe.ReplaceAllString(base, "-"), "-")
	if len(name) > 64 {
		name = name[:64]
	}
	if name == "" {
		return "run"
	}
	return name
}
