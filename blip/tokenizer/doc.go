// Package tokenizer is BERT's uncased WordPiece tokenizer exactly as BLIP uses it
// (BertTokenizer rules, [DEC]/[ENC] appended after the vocabulary), loaded from a
// vocab.txt or a tokenizer.json, and BLIP's pre_caption text cleaning. It knows no
// tensors: it produces ids and masks as Go slices.
package tokenizer
