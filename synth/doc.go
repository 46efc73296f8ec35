// Package synth is the synthetic benchmark world: rendered scenes with a grammar of true
// captions and web-like noise injected at a known rate, so every claim about the filter,
// the captioner and pretraining can be measured against a known truth.
package synth
