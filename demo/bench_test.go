package demo

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// BenchmarkQuickDemo times the quick demo, stage by stage (go test -bench QuickDemo
// -benchtime 1x ./demo): each stage's seconds are a metric of their own, beside the
// whole demo's ns/op. `capfilt demo` prints the same stage times for any recipe.
func BenchmarkQuickDemo(b *testing.B) {
	for i := 0; i < b.N; i++ {
		res, err := Run(context.Background(), Config{Workdir: filepath.Join(b.TempDir(), "demo"), Recipe: QuickRecipe(),
			Seeds: QuickRecipe().Seeds, Workers: 2})
		if err != nil {
			b.Fatal(err)
		}
		for _, st := range res.Stages {
			b.ReportMetric(st.Seconds, "s/"+strings.NewReplacer(" ", "-", ",", "").Replace(st.Name))
		}
	}
}
