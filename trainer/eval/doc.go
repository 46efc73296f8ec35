// Package eval scores a trained BLIP the way the paper's tables do, in pure Go:
// coco-caption's BLEU-1…4 and CIDEr-D on captions (with its PTB tokenisation), BLIP's
// retrieval recall (ITC top-k candidates re-ranked by ITM, TR@K and IR@K), and the COCO
// results and annotation files they read. It knows no model: the commands and the
// training loop compute predictions and scores and hand them here.
package eval
