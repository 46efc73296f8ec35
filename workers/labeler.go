package workers

import (
	"context"
	"fmt"

	"github.com/capfilt/capfilt/filter"
	"github.com/capfilt/capfilt/pipeline"
	"github.com/capfilt/capfilt/shards"
)

// Labeler is the model stage: it writes synthetic captions for a batch of images and
// scores every caption of each image, the web one and the synthetic ones. It is all the
// worker needs of the captioner and the filter, so that the BLIP implementation can run
// the vision transformer once for both when they are one model, and a pass-through can
// stand in to measure everything around the model.
type Labeler interface {
	// ImageSize is the side of the square, normalised images the model reads.
	ImageSize() int
	// Label returns one Labels per image of b, in order. An error that wraps
	// torch.ErrOutOfMemory makes the worker split the batch and try the halves.
	Label(ctx context.Context, b Batch) ([]Labels, error)
}

// LabelerSource opens the model stage a run's settings ask for. It may share one loaded
// model between the workers of a process and between runs with the same models.
type LabelerSource interface {
	Labeler(ctx context.Context, rs pipeline.RunSettings) (Labeler, error)
}

// Batch is the model's input: preprocessed images (CHW float32, one after the other) with
// their keys and web captions.
type Batch struct {
	Pixels      []float32
	Keys        []string
	WebCaptions []string
	Size        int // the images' side
}

// Len is the number of images.
func (b Batch) Len() int { return len(b.Keys) }

// Slice is images [i, j) of b, sharing its memory.
func (b Batch) Slice(i, j int) Batch {
	plane := 3 * b.Size * b.Size
	return Batch{Pixels: b.Pixels[i*plane : j*plane], Keys: b.Keys[i:j], WebCaptions: b.WebCaptions[i:j], Size: b.Size}
}

// Labels are one image's scored captions: its web caption first, then the synthetic ones.
type Labels struct {
	Captions []shards.Caption
}

// PassThrough is a Labeler without a model: every image keeps its web caption with perfect
// scores. `capfilt bench pipeline` uses it to measure what NATS, batching and Parquet
// writing cost around the model.
type PassThrough struct{ Side int }

// ImageSize is the side images are preprocessed to.
func (p PassThrough) ImageSize() int { return p.Side }

// Label scores each web caption 1.
func (p PassThrough) Label(ctx context.Context, b Batch) ([]Labels, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := make([]Labels, b.Len())
	for i, c := range b.WebCaptions {
		out[i] = Labels{Captions: []shards.Caption{{Text: c, Source: shards.SourceWeb, ITM: 1, ITC: 1}}}
	}
	return out, nil
}

// Labeler returns p itself for every run.
func (p PassThrough) Labeler(context.Context, pipeline.RunSettings) (Labeler, error) { return p, nil }

// RuleSpec records an accept rule in run settings.
func RuleSpec(r filter.AcceptRule) pipeline.RuleSpec {
	return pipeline.RuleSpec{Web: r.Web.String(), Synthetic: r.Synthetic.String(), FilterHuman: r.FilterHuman}
}

// RuleFromSpec reads back a rule RuleSpec recorded.
func RuleFromSpec(s pipeline.RuleSpec) (filter.AcceptRule, error) {
	r := filter.AcceptRule{FilterHuman: s.FilterHuman}
	var err error
	if r.Web, err = filter.ParseCondition(s.Web); err != nil {
		return r, fmt.Errorf("accept rule for web captions %q: %w", s.Web, err)
	}
	if r.Synthetic, err = filter.ParseCondition(s.Synthetic); err != nil {
		return r, fmt.Errorf("accept rule for synthetic captions %q: %w", s.Synthetic, err)
	}
	return r, nil
}
