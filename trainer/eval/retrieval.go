package eval

import (
	"fmt"
	"io"
	"sort"
	"text/tabwriter"
)

// BLIP's retrieval evaluation (blip-spec §5, §12b): the ITC cosine of every image
// with every text picks, per image, the top-k texts and, per text, the top-k images
// (k 256 on COCO, 128 on Flickr); each candidate pair is scored by the ITM head, and
// the ranking score is ITM logit₁ + cosine for candidates and −100 for everything
// else. TR@K is the fraction of images whose best-ranked ground-truth text is among
// the first K; IR@K the fraction of texts whose image is.
//
// The loop that owns the model runs it in three steps: TopCandidates on the ITC
// matrix, the ITM head on every pair the candidates list, RerankedScores; Recall then
// reads the two score matrices.

// RerankFill is the score of every pair outside the ITC top-k.
const RerankFill = -100

// ScoreMatrix is a Rows×Cols matrix of scores, row-major.
type ScoreMatrix struct {
	Rows, Cols int
	Data       []float32
}

// NewScoreMatrix allocates a rows×cols matrix filled with v.
func NewScoreMatrix(rows, cols int, v float32) ScoreMatrix {
	m := ScoreMatrix{Rows: rows, Cols: cols, Data: make([]float32, rows*cols)}
	for i := range m.Data {
		m.Data[i] = v
	}
	return m
}

// Row is row i, sharing m's storage.
func (m ScoreMatrix) Row(i int) []float32 { return m.Data[i*m.Cols : (i+1)*m.Cols] }

// At is the entry at row i, column j.
func (m ScoreMatrix) At(i, j int) float32 { return m.Data[i*m.Cols+j] }

// Transpose returns mᵀ: the texts×images view of an images×texts matrix.
func (m ScoreMatrix) Transpose() ScoreMatrix {
	t := NewScoreMatrix(m.Cols, m.Rows, 0)
	for i := range m.Rows {
		for j := range m.Cols {
			t.Data[j*m.Rows+i] = m.At(i, j)
		}
	}
	return t
}

func (m ScoreMatrix) check(what string) error {
	if m.Rows <= 0 || m.Cols <= 0 || len(m.Data) != m.Rows*m.Cols {
		return fmt.Errorf("%s: %d×%d matrix with %d entries", what, m.Rows, m.Cols, len(m.Data))
	}
	return nil
}

// RerankCandidates are the pairs the ITM head scores: I2T[i] the top-k texts of
// image i by ITC, T2I[t] the top-k images of text t, each best first (ties: lower
// index first).
type RerankCandidates struct {
	K   int
	I2T [][]int
	T2I [][]int
}

// TopCandidates picks the candidates from the images×texts ITC cosine matrix; k is
// capped at the number of texts (images).
func TopCandidates(itc ScoreMatrix, k int) (RerankCandidates, error) {
	if err := itc.check("ITC similarities"); err != nil {
		return RerankCandidates{}, err
	}
	if k <= 0 {
		return RerankCandidates{}, fmt.Errorf("rerank: k %d is not positive", k)
	}
	c := RerankCandidates{K: k, I2T: make([][]int, itc.Rows), T2I: make([][]int, itc.Cols)}
	for i := range itc.Rows {
		c.I2T[i] = topK(itc.Row(i), k)
	}
	t := itc.Transpose()
	for j := range t.Rows {
		c.T2I[j] = topK(t.Row(j), k)
	}
	return c, nil
}

func topK(row []float32, k int) []int {
	idx := make([]int, len(row))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return row[idx[a]] > row[idx[b]] })
	return idx[:min(k, len(idx))]
}

// RerankedScores builds BLIP's two ranking matrices: i2t (images×texts) and t2i
// (texts×images) hold ITM logit₁ + ITC cosine on the candidates and RerankFill
// elsewhere. itmI2T[i][n] is the ITM logit of image i with text I2T[i][n]; itmT2I[t][n]
// that of text t with image T2I[t][n].
func (c RerankCandidates) RerankedScores(itc ScoreMatrix, itmI2T, itmT2I [][]float32) (i2t, t2i ScoreMatrix, err error) {
	if err := itc.check("ITC similarities"); err != nil {
		return i2t, t2i, err
	}
	if len(c.I2T) != itc.Rows || len(c.T2I) != itc.Cols || len(itmI2T) != itc.Rows || len(itmT2I) != itc.Cols {
		return i2t, t2i, fmt.Errorf("rerank: %d×%d similarities, %d/%d candidate lists, %d/%d ITM score lists",
			itc.Rows, itc.Cols, len(c.I2T), len(c.T2I), len(itmI2T), len(itmT2I))
	}
	i2t = NewScoreMatrix(itc.Rows, itc.Cols, RerankFill)
	for i, cands := range c.I2T {
		if len(itmI2T[i]) != len(cands) {
			return i2t, t2i, fmt.Errorf("rerank: image %d has %d candidates and %d ITM scores", i, len(cands), len(itmI2T[i]))
		}
		for n, j := range cands {
			i2t.Data[i*itc.Cols+j] = itmI2T[i][n] + itc.At(i, j)
		}
	}
	t2i = NewScoreMatrix(itc.Cols, itc.Rows, RerankFill)
	for j, cands := range c.T2I {
		if len(itmT2I[j]) != len(cands) {
			return i2t, t2i, fmt.Errorf("rerank: text %d has %d candidates and %d ITM scores", j, len(cands), len(itmT2I[j]))
		}
		for n, i := range cands {
			t2i.Data[j*itc.Rows+i] = itmT2I[j][n] + itc.At(i, j)
		}
	}
	return i2t, t2i, nil
}

// GroundTruth says which texts belong to which image.
type GroundTruth struct {
	TextImage  []int   // text t describes image TextImage[t]
	ImageTexts [][]int // the texts of each image
}

// NewGroundTruth builds the ground truth of images images from each text's image.
// Every image must have a text.
func NewGroundTruth(textImage []int, images int) (GroundTruth, error) {
	g := GroundTruth{TextImage: textImage, ImageTexts: make([][]int, images)}
	for t, i := range textImage {
		if i < 0 || i >= images {
			return g, fmt.Errorf("ground truth: text %d names image %d of %d", t, i, images)
		}
		g.ImageTexts[i] = append(g.ImageTexts[i], t)
	}
	for i, ts := range g.ImageTexts {
		if len(ts) == 0 {
			return g, fmt.Errorf("ground truth: image %d has no text", i)
		}
	}
	return g, nil
}

// RetrievalScores are R@1/5/10 for text retrieval (image → texts) and image retrieval
// (text → images), as fractions, with BLIP's means.
type RetrievalScores struct {
	TR1    float64 `json:"txt_r1"`
	TR5    float64 `json:"txt_r5"`
	TR10   float64 `json:"txt_r10"`
	TRMean float64 `json:"txt_r_mean"`
	IR1    float64 `json:"img_r1"`
	IR5    float64 `json:"img_r5"`
	IR10   float64 `json:"img_r10"`
	IRMean float64 `json:"img_r_mean"`
	RMean  float64 `json:"r_mean"`
	Images int     `json:"images"`
	Texts  int     `json:"texts"`
}

// Recall ranks every row of i2t (images×texts) and t2i (texts×images). A ground-truth
// entry's rank is the number of entries scored above it plus the equal ones of lower
// index, so ties never depend on a sort's order.
func Recall(i2t, t2i ScoreMatrix, gt GroundTruth) (RetrievalScores, error) {
	if err := i2t.check("image→text scores"); err != nil {
		return RetrievalScores{}, err
	}
	if err := t2i.check("text→image scores"); err != nil {
		return RetrievalScores{}, err
	}
	images, texts := i2t.Rows, i2t.Cols
	if t2i.Rows != texts || t2i.Cols != images || len(gt.TextImage) != texts || len(gt.ImageTexts) != images {
		return RetrievalScores{}, fmt.Errorf("recall: i2t %d×%d, t2i %d×%d, ground truth for %d texts and %d images",
			i2t.Rows, i2t.Cols, t2i.Rows, t2i.Cols, len(gt.TextImage), len(gt.ImageTexts))
	}
	s := RetrievalScores{Images: images, Texts: texts}
	for i := range images {
		best := texts
		for _, t := range gt.ImageTexts[i] {
			best = min(best, rankOf(i2t.Row(i), t))
		}
		s.TR1, s.TR5, s.TR10 = s.TR1+hit(best, 1), s.TR5+hit(best, 5), s.TR10+hit(best, 10)
	}
	for t := range texts {
		r := rankOf(t2i.Row(t), gt.TextImage[t])
		s.IR1, s.IR5, s.IR10 = s.IR1+hit(r, 1), s.IR5+hit(r, 5), s.IR10+hit(r, 10)
	}
	s.TR1, s.TR5, s.TR10 = s.TR1/float64(images), s.TR5/float64(images), s.TR10/float64(images)
	s.IR1, s.IR5, s.IR10 = s.IR1/float64(texts), s.IR5/float64(texts), s.IR10/float64(texts)
	s.TRMean = (s.TR1 + s.TR5 + s.TR10) / 3
	s.IRMean = (s.IR1 + s.IR5 + s.IR10) / 3
	s.RMean = (s.TRMean + s.IRMean) / 2
	return s, nil
}

func rankOf(row []float32, j int) int {
	r := 0
	for k, v := range row {
		if v > row[j] || (v == row[j] && k < j) {
			r++
		}
	}
	return r
}

func hit(rank, k int) float64 {
	if rank < k {
		return 1
	}
	return 0
}

// WriteTable prints the recalls ×100, as the paper's tables give them.
func (s RetrievalScores) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "\tR@1\tR@5\tR@10\tmean\t\n")
	fmt.Fprintf(tw, "text retrieval (%d images)\t%.2f\t%.2f\t%.2f\t%.2f\t\n", s.Images, 100*s.TR1, 100*s.TR5, 100*s.TR10, 100*s.TRMean)
	fmt.Fprintf(tw, "image retrieval (%d texts)\t%.2f\t%.2f\t%.2f\t%.2f\t\n", s.Texts, 100*s.IR1, 100*s.IR5, 100*s.IR10, 100*s.IRMean)
	return tw.Flush()
}
