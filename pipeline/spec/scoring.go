package spec

import "fmt"

// ITMFirstToken is the token the filter puts first in the text it feeds the ITM head.
// BLIP was trained with [ENC] there (the image-grounded encoder's token); Hugging Face's
// BlipForImageTextRetrieval feeds the tokenizer's [CLS] unchanged, so one checkpoint
// gives other ITM scores in the two, and a threshold tuned on one does not carry over.
type ITMFirstToken string

const (
	// ITMFirstEnc is BLIP's own: the ITM text starts with [ENC]. The default.
	ITMFirstEnc ITMFirstToken = "enc"
	// ITMFirstCLS matches HF transformers' BlipForImageTextRetrieval: [CLS] stays first.
	ITMFirstCLS ITMFirstToken = "cls"
)

// ParseITMFirstToken reads "enc" or "cls"; "" is ITMFirstEnc.
func ParseITMFirstToken(s string) (ITMFirstToken, error) {
	switch t := ITMFirstToken(s); t {
	case "", ITMFirstEnc:
		return ITMFirstEnc, nil
	case ITMFirstCLS:
		return t, nil
	}
	return "", fmt.Errorf("%q: want enc (BLIP's, the default) or cls (as HF's BlipForImageTextRetrieval)", s)
}

// OrDefault is t, or ITMFirstEnc when t is unset (a run recorded before the setting).
func (t ITMFirstToken) OrDefault() ITMFirstToken {
	if t == "" {
		return ITMFirstEnc
	}
	return t
}

// Validate names an unknown token (a Problems error), nil for enc, cls or unset.
func (t ITMFirstToken) Validate() error {
	if _, err := ParseITMFirstToken(string(t)); err != nil {
		var ps Problems
		ps.add("itm-first-token", fmt.Sprintf("%q", string(t)), "want enc or cls")
		return ps.err()
	}
	return nil
}
