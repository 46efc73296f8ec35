package eval

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// ImageID names an image across result and annotation files: a JSON number as it is
// written (391895), a JSON string as it is ("coco_391895"), so 391895 and "391895"
// name the same image.
type ImageID string

// Prediction is one generated caption: a row of a COCO results file.
type Prediction struct {
	ImageID ImageID `json:"image_id"`
	Caption string  `json:"caption"`
}

// RefImage is one evaluation image and its human captions.
type RefImage struct {
	ID       ImageID
	File     string   // the image path as the annotation file gives it; "" when it gives none
	Captions []string // at least one
}

// References are the images of an evaluation set with their reference captions, in
// the order the annotation file first names them.
type References struct {
	Source string // the file they were read from, for errors
	Images []RefImage
	byID   map[ImageID]int
}

// Lookup returns the image with id.
func (r *References) Lookup(id ImageID) (RefImage, bool) {
	i, ok := r.byID[id]
	if !ok {
		return RefImage{}, false
	}
	return r.Images[i], true
}

// ImageCIDEr is one image's CIDEr-D.
type ImageCIDEr struct {
	ImageID ImageID `json:"image_id"`
	Caption string  `json:"caption"`
	CIDErD  float64 `json:"CIDEr"`
}

// CaptionScores are coco-caption's BLEU-1…4 and CIDEr-D of a set of predictions (as
// fractions: the paper's tables print them ×100), with what was counted.
type CaptionScores struct {
	Bleu1 float64 `json:"Bleu_1"`
	Bleu2 float64 `json:"Bleu_2"`
	Bleu3 float64 `json:"Bleu_3"`
	Bleu4 float64 `json:"Bleu_4"`
	CIDEr float64 `json:"CIDEr"`

	Images     int `json:"images"`     // predictions scored (one per image)
	References int `json:"references"` // reference captions of those images
	// Unpredicted counts images of the references without a prediction; like
	// coco-caption, the scores cover the predicted images only.
	Unpredicted int `json:"images_without_prediction"`

	PerImage []ImageCIDEr `json:"per_image,omitempty"`
}

// ScoreCaptions tokenises predictions and references with PTBTokenize and scores
// them as coco-caption's COCOEvalCap does: the images evaluated are those predicted,
// each must have references and one prediction only; CIDEr-D's document frequencies
// come from the references of the evaluated images.
func ScoreCaptions(preds []Prediction, refs *References) (CaptionScores, error) {
	if len(preds) == 0 {
		return CaptionScores{}, fmt.Errorf("score captions: no predictions")
	}
	seen := make(map[ImageID]bool, len(preds))
	cands := make([][]string, len(preds))
	refToks := make([][][]string, len(preds))
	var bleu BleuStats
	nrefs := 0
	for i, p := range preds {
		if seen[p.ImageID] {
			return CaptionScores{}, fmt.Errorf("score captions: image_id %s has more than one prediction", p.ImageID)
		}
		seen[p.ImageID] = true
		img, ok := refs.Lookup(p.ImageID)
		if !ok {
			return CaptionScores{}, fmt.Errorf("score captions: image_id %s of the predictions has no references in %s", p.ImageID, refs.Source)
		}
		cands[i] = PTBTokenize(p.Caption)
		for _, c := range img.Captions {
			refToks[i] = append(refToks[i], PTBTokenize(c))
		}
		nrefs += len(img.Captions)
		bleu.Add(cands[i], refToks[i])
	}
	b := bleu.Bleu()
	per := CIDErD(cands, refToks)
	s := CaptionScores{Bleu1: b[0], Bleu2: b[1], Bleu3: b[2], Bleu4: b[3],
		Images: len(preds), References: nrefs, Unpredicted: len(refs.Images) - len(preds)}
	for i, p := range preds {
		s.CIDEr += per[i]
		s.PerImage = append(s.PerImage, ImageCIDEr{ImageID: p.ImageID, Caption: p.Caption, CIDErD: per[i]})
	}
	s.CIDEr /= float64(len(preds))
	return s, nil
}

// WriteTable prints the scores ×100, as the paper's tables give them.
func (s CaptionScores) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "BLEU-1\tBLEU-2\tBLEU-3\tBLEU-4\tCIDEr-D\timages\treferences\t\n")
	fmt.Fprintf(tw, "%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%d\t%d\t\n",
		100*s.Bleu1, 100*s.Bleu2, 100*s.Bleu3, 100*s.Bleu4, 100*s.CIDEr, s.Images, s.References)
	if err := tw.Flush(); err != nil {
		return err
	}
	if s.Unpredicted > 0 {
		_, err := fmt.Fprintf(w, "(%d reference images have no prediction and are not scored)\n", s.Unpredicted)
		return err
	}
	return nil
}
