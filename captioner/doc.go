// Package captioner generates captions in batches with the BLIP image-grounded decoder:
// nucleus sampling (CapFilt), beam search and greedy decoding with transformers-4.15
// semantics, prompt handling and a key/value cache. Its settings are spec.Generation, the
// type run settings record.
package captioner
