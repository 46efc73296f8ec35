// Package imageproc turns encoded image bytes into the pixels BLIP reads: decoding
// (JPEG, PNG, GIF, WebP, BMP) to PIL's convert("RGB") raster, PIL-exact bicubic resizing,
// CLIP normalisation, pixel limits that refuse decompression bombs before decoding, and
// the errors that name why an image was refused. For training it holds BLIP's train-time
// augmentation (TrainTransform: random resized crop, horizontal flip, RandAugment with
// OpenCV-exact affine warps), every random choice drawn from a source the caller seeds.
// It knows no tensors: it produces float32 planes that the model code hands to libtorch.
package imageproc
