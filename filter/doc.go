// Package filter scores (image, caption) pairs in batches with the BLIP ITM and ITC heads.
// The CapFilt accept rule that decides on the scores is spec.AcceptRule, a run setting
// the workers apply without linking any model code.
package filter
