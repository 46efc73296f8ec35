// Package demo is `capfilt demo`: BLIP's bootstrap, measured end to end on a synthetic
// web where the truth is known. For each seed it writes a world (package synth),
// pretrains a tiny BLIP on the annotated set and the noisy web, finetunes a captioner
// and a filter from it, CapFilts the web set through the embedded pipeline (localrun, the
// code path of capfilt run), pretrains fresh models from the same initial weights on
// the noisy, captioned and filtered data, evaluates each on the held-out test set, and
// writes the paper's Table 1 in miniature and an HTML report.
package demo
