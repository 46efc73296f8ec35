// Package blip is the BLIP model: the ViT, the MED text transformer in its three modes
// (unimodal encoder, image-grounded encoder, image-grounded decoder), the ITC/ITM/LM heads,
// the decoding cache, and checkpoint loading and saving (the Salesforce↔HF key table).
// Checkpoint file formats live in blip/checkpoint, the tokenizer in blip/tokenizer and
// image decoding and preprocessing in package imageproc.
package blip
