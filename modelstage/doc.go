// Package modelstage is the BLIP model stage the workers are given through their Labeler
// interface: it loads the captioner and the filter once per process
// (blip.LoadForInference), prepares pixels with imageproc, runs the vision transformer
// once for both when they are one checkpoint, captions, and scores every caption. The
// accept rule is applied by the workers (spec.AcceptRule), so this package decides
// nothing. PassThrough stands in for the model where only the pipeline around it is
// measured, and WriteRandomModel makes the deterministic random checkpoints capfilt
// can run without a download.
package modelstage
