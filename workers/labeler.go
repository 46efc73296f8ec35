package workers

import (
	"context"
	"errors"

	"github.com/capfilt/capfilt/pipeline"
	"github.com/capfilt/capfilt/shards"
)

// Preparer turns an image's bytes into what the model reads. The decode pool calls it
// from several goroutines at once.
type Preparer interface {
	// ImageSize is the side of the square, normalised images the model reads.
	ImageSize() int
	// Prepare decodes one image and returns its pixels (CHW float32, 3×ImageSize² values)
	// and its original width and height. An image whose header declares more than
	// maxPixels pixels (0: the preparer's default limit) fails with an error wrapping
	// ErrTooManyPixels; any other error means the image is corrupt. Either way the sample
	// is skipped and counted with its reason.
	Prepare(image []byte, maxPixels int64) (pixels []float32, width, height int, err error)
}

// Labeler is the model stage: it prepares images, writes synthetic captions for a batch
// of them and scores every caption of each image, its input captions and the synthetic
// ones. It is all the worker needs of the captioner and the filter, so that the worker
// links no model code, the BLIP implementation (package modelstage) can run the vision
// transformer once for both, and a pass-through can stand in to measure everything
// around the model.
type Labeler interface {
	Preparer
	// Label returns one Labels per image of b, in order. An error that wraps
	// ErrOutOfMemory makes the worker split the batch and try the halves.
	Label(ctx context.Context, b Batch) ([]Labels, error)
}

// The errors a model stage reports for the worker to act on.
var (
	// ErrOutOfMemory says a batch did not fit the device: the worker splits it.
	ErrOutOfMemory = errors.New("out of device memory")
	// ErrTooManyPixels says an image is larger than the pixel limit.
	ErrTooManyPixels = errors.New("image has too many pixels")
)

// LabelerSource opens the model stage a run's settings ask for. It may share one loaded
// model between the workers of a process and between runs with the same models.
type LabelerSource interface {
	Labeler(ctx context.Context, rs pipeline.RunSettings) (Labeler, error)
}

// Batch is the model's input: prepared images (CHW float32, one after the other) with
// their keys and input captions.
type Batch struct {
	Pixels []float32
	Keys   []string
	// Captions are each image's input captions (one from a .txt member or a string
	// column, every usable entry of a list<string> column), each to be scored on its own.
	Captions [][]string
	// Sources say what each image's input captions are: shards.SourceWeb, or
	// shards.SourceHuman for a run whose captions were written by annotators.
	Sources []string
	Size    int // the images' side
}

// Len is the number of images.
func (b Batch) Len() int { return len(b.Keys) }

// Slice is images [i, j) of b, sharing its memory.
func (b Batch) Slice(i, j int) Batch {
	plane := 3 * b.Size * b.Size
	return Batch{Pixels: b.Pixels[i*plane : j*plane], Keys: b.Keys[i:j], Captions: b.Captions[i:j], Sources: b.Sources[i:j], Size: b.Size}
}

// Labels are one image's scored captions: its input captions first, in input order and
// with their source, then the synthetic ones.
type Labels struct {
	Captions []shards.Caption
}
