// Package synth is the synthetic benchmark world: rendered scenes with a grammar of true
// captions and web-like noise injected at a known rate, so every claim about the filter,
// the captioner and pretraining can be measured against a known truth.
//
// # The world
//
// A Picture is one to three objects (30/40/30%), each in its own cell of a 3×3 grid:
// one of 5 shapes, 8 colours and 2 sizes, moved off its cell's centre by at most a
// sixteenth of the cell; behind them a plain (40%), striped, checkered or dotted
// background in one of 5 muted tones. Shapes are drawn without anti-aliasing, coded as
// JPEG (quality 85–95) or PNG. Its full description names every object's size, colour
// and shape, the relation of each object to the next ("left of", "right of", "above",
// "below", by grid cells), the cell of a lone object and a textured background:
// "a small red circle left of a large blue square above a small green cross on a
// striped background". CleanCaption words it canonically; variants reorder the objects
// and now and then take a synonym ("big", "over", "to the left of", "in the center"),
// put the background first or start with "there is".
//
// ParseCaption reads a caption back into a Description, and AttributeAccuracy scores it
// against a picture: precision (the share of stated attributes that are true) and
// coverage (the share of the full description stated correctly). Every caption the world
// writes is checked with it: full captions score 1 and 1, incomplete ones precision 1 and
// coverage below 1, noisy ones below 1.
//
// # Web captions
//
// Each web caption is full, incomplete (where the objects are or what shapes they are
// left unsaid: "a small red shape and a large blue shape") or noise: a wrong attribute (one
// colour, shape, size, cell, relation or texture changed), another image's caption, or
// alt-text junk (file names, shop slogans, near-empty text). The shares are exact: of
// 2000 captions at the default 40% noise, 45% incomplete and noise mix, 300 are full,
// 900 incomplete, 320 wrong, 240 another image's and 240 junk. The truth sits in each
// KEY.json under "synth", a key the pipeline never reads.
//
// # Why these sizes
//
// The demo pretrains and finetunes several tiny BLIPs on 2 CPU cores in minutes, so
// the world is sized for a model of some hundred thousand parameters (ModelConfigJSON:
// both towers 64 wide, a 3-layer ViT, a 2-layer text transformer). At the default 48
// pixels with 16-pixel patches each grid cell is one patch: 9 patch tokens per image,
// each holding at most one object of 7 (small) or 13 (large) pixels, so shape, colour and
// size are local and relations are between patch positions. The vocabulary is 213 tokens
// (every grammar and junk word whole, plus punctuation, digits, letters and their "##"
// pieces, so no text tokenises to [UNK]); a caption is at most 29 tokens with [CLS] and
// [SEP] (CaptionTokenBound), most far fewer. The space of
// pictures is large (over 10^8 with three objects), so captions of a few hundred test
// images are nearly all distinct and retrieval is meaningful, while each attribute has
// few enough values that a minute of training sees every one thousands of times.
//
// Captions carry information web text leaves out: an incomplete caption is true but
// scores low coverage, so a captioner trained on full annotated captions can add what
// the web text lacks (the +C effect), and the noise is what a filter must remove (+F).
// Wrong-attribute noise is the hard kind, needing the image looked at closely; junk is
// the easy kind; the filter's recall by kind (FilterReport) shows the difference.
// Captions name left and right, so a model trained on the world must not flip images
// horizontally (world.json says so).
package synth
