package eval

import (
	"math"
	"strings"
	"testing"
)

func matrix(rows [][]float32) ScoreMatrix {
	m := NewScoreMatrix(len(rows), len(rows[0]), 0)
	for i, r := range rows {
		copy(m.Row(i), r)
	}
	return m
}

func sameScore(t *testing.T, what string, got, want float64) {
	t.Helper()
	if math.Abs(got-want) > 1e-12 {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

// Three images, five texts; images 0 and 2 have two texts each.
//
//	image 0: its text 0 scores highest (rank 0)
//	image 1: its text 2 is third (rank 2): a hit at 5, not at 1
//	image 2: text 3 is last but text 4 is first: the best GT text counts (rank 0)
//
// By text (columns): t0 → image 0 first; t1 → image 0 third; t2 → image 1 second;
// t3 → image 2 third; t4 → image 2 first.
func TestRecallOnAConstructedMatrixWithSeveralTextsPerImage(t *testing.T) {
	sims := matrix([][]float32{
		{0.9, 0.1, 0.8, 0.2, 0.3},
		{0.7, 0.6, 0.5, 0.4, 0.3},
		{0.1, 0.2, 0.3, 0.05, 0.9},
	})
	gt, err := NewGroundTruth([]int{0, 0, 1, 2, 2}, 3)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Recall(sims, sims.Transpose(), gt)
	if err != nil {
		t.Fatal(err)
	}
	sameScore(t, "TR@1", s.TR1, 2.0/3)
	sameScore(t, "TR@5", s.TR5, 1)
	sameScore(t, "TR@10", s.TR10, 1)
	sameScore(t, "IR@1", s.IR1, 2.0/5)
	sameScore(t, "IR@5", s.IR5, 1)
	sameScore(t, "TR mean", s.TRMean, (2.0/3+2)/3)
	sameScore(t, "r mean", s.RMean, (s.TRMean+s.IRMean)/2)
	if s.Images != 3 || s.Texts != 5 {
		t.Errorf("counts %d images %d texts", s.Images, s.Texts)
	}
}

// Image 0's only text is seventh (six texts above it): a miss at 5, a hit at 10.
func TestRecallAtFiveAndTenSeparate(t *testing.T) {
	row0 := []float32{0.4, 0.9, 0.8, 0.7, 0.6, 0.5, 0.45, 0.1, 0.1, 0.1, 0.1, 0.1}
	row1 := []float32{0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	sims := matrix([][]float32{row0, row1})
	textImage := []int{0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}
	gt, err := NewGroundTruth(textImage, 2)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Recall(sims, sims.Transpose(), gt)
	if err != nil {
		t.Fatal(err)
	}
	sameScore(t, "TR@1", s.TR1, 0.5)
	sameScore(t, "TR@5", s.TR5, 0.5)
	sameScore(t, "TR@10", s.TR10, 1)
}

func TestRecallBreaksTiesByLowerIndex(t *testing.T) {
	row := []float32{0.5, 0.5, 0.5}
	if r := rankOf(row, 2); r != 2 {
		t.Errorf("rank of the last of three equal scores = %d, want 2", r)
	}
	if r := rankOf(row, 0); r != 0 {
		t.Errorf("rank of the first = %d, want 0", r)
	}
}

// k = 2 of 3: image 0's candidates are texts 0 and 1, image 1's texts 1 and 2; the
// re-ranked score is ITM logit + cosine, and the pair left out gets −100.
func TestRerankedScoresAddITMToCosineOnTheTopK(t *testing.T) {
	itc := matrix([][]float32{{0.3, 0.2, 0.1}, {0.1, 0.5, 0.4}})
	c, err := TopCandidates(itc, 2)
	if err != nil {
		t.Fatal(err)
	}
	wantI2T := [][]int{{0, 1}, {1, 2}}
	wantT2I := [][]int{{0, 1}, {1, 0}, {1, 0}}
	for i := range wantI2T {
		if !equalInts(c.I2T[i], wantI2T[i]) {
			t.Errorf("image %d candidates %v, want %v", i, c.I2T[i], wantI2T[i])
		}
	}
	for j := range wantT2I {
		if !equalInts(c.T2I[j], wantT2I[j]) {
			t.Errorf("text %d candidates %v, want %v", j, c.T2I[j], wantT2I[j])
		}
	}
	i2t, t2i, err := c.RerankedScores(itc, [][]float32{{-1, 2}, {0.5, 3}}, [][]float32{{1, 1}, {1, 1}, {-2, 2}})
	if err != nil {
		t.Fatal(err)
	}
	want := [][]float32{{-1 + 0.3, 2 + 0.2, RerankFill}, {RerankFill, 0.5 + 0.5, 3 + 0.4}}
	for i := range want {
		for j := range want[i] {
			if got := i2t.At(i, j); got != want[i][j] {
				t.Errorf("i2t[%d][%d] = %v, want %v", i, j, got, want[i][j])
			}
		}
	}
	// text 2's candidates are images 1 (ITM −2) and 0 (ITM 2).
	if t2i.At(2, 1) != -2+0.4 || t2i.At(2, 0) != 2+0.1 {
		t.Errorf("t2i row 2 = %v", t2i.Row(2))
	}
	// Re-ranking flips image 0's order: text 1 now beats text 0.
	if rankOf(i2t.Row(0), 1) != 0 {
		t.Errorf("ITM did not re-rank: %v", i2t.Row(0))
	}
	if _, _, err := c.RerankedScores(itc, [][]float32{{1}, {1, 1}}, [][]float32{{1, 1}, {1, 1}, {1, 1}}); err == nil || !strings.Contains(err.Error(), "image 0") {
		t.Errorf("short ITM list: %v", err)
	}
}

func TestGroundTruthRefusesImagesWithoutTexts(t *testing.T) {
	if _, err := NewGroundTruth([]int{0, 0}, 2); err == nil {
		t.Error("image 1 without a text was accepted")
	}
	if _, err := NewGroundTruth([]int{0, 3}, 2); err == nil {
		t.Error("a text naming image 3 of 2 was accepted")
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
