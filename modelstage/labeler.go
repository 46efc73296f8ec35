package modelstage

import (
	"context"
	"errors"
	"fmt"

	"github.com/capfilt/capfilt/blip"
	"github.com/capfilt/capfilt/captioner"
	"github.com/capfilt/capfilt/filter"
	"github.com/capfilt/capfilt/imageproc"
	"github.com/capfilt/capfilt/shards"
	"github.com/capfilt/capfilt/torch"
	"github.com/capfilt/capfilt/workers"
)

// BLIPLabeler is the real model stage: the BLIP captioner writes synthetic captions and
// the BLIP filter scores them with the image's input captions, each on its own. When both are one loaded model (one
// checkpoint with both towers) the vision transformer runs once per batch for both.
type BLIPLabeler struct {
	cap    *captioner.Captioner
	scorer *filter.Scorer
	capViT *blip.Model // the captioner's model, whose ViT runs when shared
	shared bool
	size   int
	device torch.Device
}

// NewBLIPLabeler joins a captioner and a scorer. capModel is the captioner's model; when
// it is the scorer's too, the image embeddings are shared.
func NewBLIPLabeler(c *captioner.Captioner, capModel *blip.Model, s *filter.Scorer) (*BLIPLabeler, error) {
	if capModel.Config.Vision.ImageSize != s.Model().Config.Vision.ImageSize {
		return nil, fmt.Errorf("captioner reads %d px images, filter %d px: preprocess cannot serve both",
			capModel.Config.Vision.ImageSize, s.Model().Config.Vision.ImageSize)
	}
	return &BLIPLabeler{cap: c, scorer: s, capViT: capModel, shared: capModel == s.Model(),
		size: capModel.Config.Vision.ImageSize, device: capModel.Device()}, nil
}

// ImageSize is the vision model's input side.
func (l *BLIPLabeler) ImageSize() int { return l.size }

// Prepare decodes and preprocesses an image as BLIP's eval transform does.
func (l *BLIPLabeler) Prepare(image []byte, maxPixels int64) ([]float32, int, int, error) {
	return prepare(image, l.size, maxPixels)
}

// prepare is the one preprocessing of the model stage: PIL-exact bicubic resize to the
// model's side and CLIP normalisation; a decompression bomb is refused from its header.
func prepare(image []byte, size int, maxPixels int64) ([]float32, int, int, error) {
	pixels, w, h, err := imageproc.Preprocess(image, size, imageproc.ImageLimits{MaxPixels: maxPixels})
	if errors.Is(err, imageproc.ErrImageTooLarge) {
		return nil, 0, 0, fmt.Errorf("%w: %w", workers.ErrTooManyPixels, err)
	}
	return pixels, w, h, err
}

// SharesViT reports whether one ViT pass serves both captioning and filtering.
func (l *BLIPLabeler) SharesViT() bool { return l.shared }

// Label captions and scores a batch.
func (l *BLIPLabeler) Label(ctx context.Context, b workers.Batch) ([]workers.Labels, error) {
	n := b.Len()
	if n == 0 {
		return nil, nil
	}
	if len(b.Pixels) != n*3*l.size*l.size || b.Size != l.size {
		return nil, fmt.Errorf("model stage: %d pixel values of %d px images for %d images of %d px", len(b.Pixels), b.Size, n, l.size)
	}
	if err := checkBatch(b); err != nil {
		return nil, err
	}
	s := torch.NewScope()
	defer s.Close()
	pixels := s.Track(torch.FromFloat32(b.Pixels, int64(n), 3, int64(l.size), int64(l.size)))
	var caps [][]captioner.Caption
	var scores [][]filter.Score
	var err error
	if l.shared {
		torch.NoGrad(func() {
			img := l.capViT.EncodeImage(pixels, false)
			if err = img.Err(); err != nil {
				return
			}
			if caps, err = l.cap.CaptionImages(ctx, img, b.Keys); err != nil {
				return
			}
			scores, err = l.scorer.ScoreImages(ctx, img, captionTexts(b.Captions, caps))
		})
	} else {
		caps, err = l.cap.CaptionPixels(ctx, pixels, b.Keys)
		if err == nil {
			scores, err = l.scorer.ScorePixels(ctx, pixels, captionTexts(b.Captions, caps))
		}
	}
	if err != nil {
		if errors.Is(err, torch.ErrOutOfMemory) {
			if l.device.CUDA {
				torch.CUDAEmptyCache() // give the halves the cached blocks back
			}
			return nil, fmt.Errorf("%w: %w", workers.ErrOutOfMemory, err)
		}
		return nil, err
	}
	out := make([]workers.Labels, n)
	for i := range n {
		in := b.Captions[i]
		if len(scores[i]) != len(in)+len(caps[i]) {
			return nil, fmt.Errorf("model stage: image %q has %d scores for %d captions", b.Keys[i], len(scores[i]), len(in)+len(caps[i]))
		}
		cs := make([]shards.Caption, 0, len(scores[i]))
		for k, text := range in {
			cs = append(cs, shards.Caption{Text: text, Source: inputSource(b, i), ITM: scores[i][k].ITM, ITC: scores[i][k].ITC})
		}
		for k, c := range caps[i] {
			sc := scores[i][len(in)+k]
			cs = append(cs, shards.Caption{Text: c.Text, Source: shards.SourceSynthetic, ITM: sc.ITM, ITC: sc.ITC})
		}
		out[i] = workers.Labels{Captions: cs}
	}
	return out, nil
}

// checkBatch makes sure every image has its input captions and their source.
func checkBatch(b workers.Batch) error {
	if len(b.Captions) != b.Len() || (b.Sources != nil && len(b.Sources) != b.Len()) {
		return fmt.Errorf("model stage: %d images with %d caption lists and %d sources", b.Len(), len(b.Captions), len(b.Sources))
	}
	return nil
}

// inputSource is what image i's input captions are; web unless the batch says.
func inputSource(b workers.Batch, i int) string {
	if b.Sources == nil || b.Sources[i] == "" {
		return shards.SourceWeb
	}
	return b.Sources[i]
}

// captionTexts are each image's input captions, then its synthetic ones.
func captionTexts(in [][]string, caps [][]captioner.Caption) [][]string {
	out := make([][]string, len(in))
	for i, cs := range in {
		out[i] = append(out[i], cs...)
		for _, c := range caps[i] {
			out[i] = append(out[i], c.Text)
		}
	}
	return out
}

// MemoryStats reports the CUDA device's memory; ok is false on the CPU.
func (l *BLIPLabeler) MemoryStats() (map[string]int64, bool) {
	if !l.device.CUDA {
		return nil, false
	}
	m, err := torch.CUDAMemoryStats(l.device.Index)
	if err != nil {
		return nil, false
	}
	return map[string]int64{"allocated": m.Allocated, "reserved": m.Reserved, "peak": m.PeakAllocated, "total": m.Total}, true
}
