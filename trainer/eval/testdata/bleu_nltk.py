#!/usr/bin/env python3
"""BLEU goldens from NLTK (Debian python3-nltk 3.8), an implementation independent of
coco-caption's, on random tokenised caption sets.

corpus_bleu with uniform weights up to n is coco-caption's corpus BLEU-n where the two
definitions coincide: the same clipped n-gram counts summed over the corpus, the same
closest reference length (ties to the shorter), the same brevity penalty exp(1 - r/c)
for c < r. They differ only in (a) coco-caption's smoothing epsilons, (match + 1e-15) /
(guess + 1e-9) and (c + 1e-15) / (r + 1e-9), a relative change below 1e-9 on these sets,
and (b) an order with no match at all, where NLTK returns 0 and coco-caption a tiny
positive number, (c) a candidate shorter than n words, which has no n-grams: NLTK's
modified precision counts a denominator of max(1, 0) = 1 for it, coco-caption 0, and (d)
an empty corpus of candidates (NLTK's penalty 0). The candidates below have 4 words or
more, and a small vocabulary makes most orders match.

Run: /usr/bin/python3 trainer/eval/testdata/bleu_nltk.py   (writes bleu_nltk.json beside it)
"""
import json
import os
import random

import nltk
from nltk.translate.bleu_score import corpus_bleu


def main():
    rng = random.Random(12)
    vocab = "a man dog on the red bus sits".split()
    sets = []
    for _ in range(10):
        cands, refs = [], []
        for _ in range(rng.randint(5, 40)):
            cands.append([rng.choice(vocab) for _ in range(rng.randint(4, 12))])
            refs.append([[rng.choice(vocab) for _ in range(rng.randint(3, 12))] for _ in range(rng.randint(1, 5))])
        bleu = [corpus_bleu(refs, cands, weights=tuple([1.0 / n] * n)) for n in range(1, 5)]
        sets.append({"candidates": cands, "references": refs, "bleu": bleu})
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bleu_nltk.json")
    with open(path, "w") as f:
        json.dump({"nltk": nltk.__version__, "sets": sets}, f)
        f.write("\n")


if __name__ == "__main__":
    main()
