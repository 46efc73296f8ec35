// Package blip is the BLIP model: the ViT, the MED text transformer in its three modes
// (unimodal encoder, image-grounded encoder, image-grounded decoder), the ITC/ITM/LM heads
// and losses, the tokenizer, image preprocessing, and checkpoint loading and saving.
package blip
