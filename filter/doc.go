// Package filter scores (image, caption) pairs in batches with the BLIP ITM and ITC heads
// and applies the CapFilt accept rule.
package filter
