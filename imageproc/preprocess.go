package imageproc

import (
	"fmt"
	"runtime"
	"sync"
)

// CLIPMean and CLIPStd are the per-channel normalisation BLIP inherits from CLIP, used
// by the original transforms and by transformers' BlipImageProcessor alike.
var (
	CLIPMean = [3]float32{0.48145466, 0.4578275, 0.40821073}
	CLIPStd  = [3]float32{0.26862954, 0.26130258, 0.27577711}
)

// Normalize returns img as a CHW float32 tensor (3 planes of Height×Width), each
// sample (v/255 - mean[c]) / std[c], computed in float32 step by step as
// torchvision's ToTensor and Normalize do, so values match bit for bit.
func Normalize(img *RGBImage, mean, std [3]float32) []float32 {
	out := make([]float32, 3*img.Width*img.Height)
	normalizeInto(out, img, mean, std)
	return out
}

func normalizeInto(dst []float32, img *RGBImage, mean, std [3]float32) {
	var lut [3][256]float32
	for c := range 3 {
		for v := range 256 {
			x := float32(v) / 255
			x -= mean[c]
			lut[c][v] = x / std[c]
		}
	}
	plane := img.Width * img.Height
	r, g, b := dst[:plane], dst[plane:2*plane], dst[2*plane:3*plane]
	for i := range plane {
		p := img.Pix[3*i : 3*i+3]
		r[i], g[i], b[i] = lut[0][p[0]], lut[1][p[1]], lut[2][p[2]]
	}
}

// Preprocess is BLIP's inference transform on encoded image bytes: decode to RGB,
// resize to size×size ignoring the aspect ratio (PIL bicubic), normalise with the
// CLIP constants. It returns the 3×size×size CHW tensor and the original width and
// height.
func Preprocess(data []byte, size int, limits ImageLimits) ([]float32, int, int, error) {
	if size <= 0 {
		return nil, 0, 0, fmt.Errorf("preprocess image: size %d is not positive", size)
	}
	out := make([]float32, 3*size*size)
	w, h, _, err := preprocessInto(out, data, size, limits)
	if err != nil {
		return nil, 0, 0, err
	}
	return out, w, h, nil
}

func preprocessInto(dst []float32, data []byte, size int, limits ImageLimits) (w, h int, format string, err error) {
	img, format, err := Decode(data, limits)
	if err != nil {
		return 0, 0, format, err
	}
	normalizeInto(dst, ResizeBicubic(img, size, size), CLIPMean, CLIPStd)
	return img.Width, img.Height, format, nil
}

// PreprocessResult describes one image of a batch.
type PreprocessResult struct {
	Width, Height int    // original size
	Format        string // "jpeg", "png", ...; empty when unrecognised
	Err           error  // why the image was refused; its slot in the batch is zeros
}

// PreprocessBatch runs Preprocess on every image into one B×3×size×size tensor,
// image i at offset i·3·size·size, with up to parallelism images in flight
// (GOMAXPROCS when parallelism <= 0). dst is reused when its capacity suffices. A
// bad image does not fail the batch: its result carries the error and its slot is
// zero. The error return is only for a non-positive size.
//
// Each image in flight may hold up to limits' pixel count in memory at once.
func PreprocessBatch(dst []float32, images [][]byte, size int, limits ImageLimits, parallelism int) ([]float32, []PreprocessResult, error) {
	if size <= 0 {
		return dst, nil, fmt.Errorf("preprocess batch: size %d is not positive", size)
	}
	per := 3 * size * size
	n := len(images) * per
	if cap(dst) >= n {
		dst = dst[:n]
	} else {
		dst = make([]float32, n)
	}
	if parallelism <= 0 {
		parallelism = runtime.GOMAXPROCS(0)
	}
	results := make([]PreprocessResult, len(images))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(parallelism, len(images)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				slot := dst[i*per : (i+1)*per]
				r := &results[i]
				r.Width, r.Height, r.Format, r.Err = preprocessInto(slot, images[i], size, limits)
				if r.Err != nil {
					clear(slot)
				}
			}
		}()
	}
	for i := range images {
		next <- i
	}
	close(next)
	wg.Wait()
	return dst, results, nil
}
