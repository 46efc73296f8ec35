package modelstage

import (
	"context"

	"github.com/capfilt/capfilt/pipeline"
	"github.com/capfilt/capfilt/shards"
	"github.com/capfilt/capfilt/workers"
)

// PassThrough is a model stage without a model: it prepares images exactly as the BLIP
// stage does, and every image keeps its input captions with perfect scores. `capfilt bench
// pipeline` uses it to measure what NATS, batching and Parquet writing cost around the
// model.
type PassThrough struct{ Side int }

// ImageSize is the side images are prepared to.
func (p PassThrough) ImageSize() int { return p.Side }

// Prepare decodes and preprocesses an image as the BLIP stage does.
func (p PassThrough) Prepare(image []byte, maxPixels int64) ([]float32, int, int, error) {
	return prepare(image, p.Side, maxPixels)
}

// Label scores each input caption 1.
func (p PassThrough) Label(ctx context.Context, b workers.Batch) ([]workers.Labels, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := checkBatch(b); err != nil {
		return nil, err
	}
	out := make([]workers.Labels, b.Len())
	for i, in := range b.Captions {
		cs := make([]shards.Caption, len(in))
		for k, c := range in {
			cs[k] = shards.Caption{Text: c, Source: inputSource(b, i), ITM: 1, ITC: 1}
		}
		out[i] = workers.Labels{Captions: cs}
	}
	return out, nil
}

// Labeler returns p itself for every run.
func (p PassThrough) Labeler(context.Context, pipeline.RunSettings) (workers.Labeler, error) {
	return p, nil
}
