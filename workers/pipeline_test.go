package workers_test

import (
	"testing"
	"time"

	"github.com/capfilt/capfilt/shards"
)

func TestTwentyShardsThreeWorkersAccountForEverySample(t *testing.T) {
	w := newWorld(t)
	w.shards(t, 20, 6)
	sum := w.submit(t, w.settings(t, "twenty"))
	if len(sum.Shards) != 20 || sum.Published != 20 || sum.Known != 0 {
		t.Fatalf("submit: %d shards, %d published, %d known", len(sum.Shards), sum.Published, sum.Known)
	}
	w.startWorkers(t, 3, w.src)
	st := w.waitComplete(t, "twenty", 90*time.Second)
	if len(st.Problems) != 0 {
		t.Fatalf("problems: %+v", st.Problems)
	}
	out, _ := shards.ParseURL(w.out)
	m := w.checkOutputs(t, "twenty", out, 20)
	if tot := m.Totals; tot.Accepted == 0 || tot.Rejected == 0 || tot.Skipped == 0 {
		t.Fatalf("totals %+v: want accepted, rejected and skipped images all present", tot)
	}
	parquet, stats, temps, _ := outputFiles(t, w.out)
	if len(parquet) != 20 || len(stats) != 20 || len(temps) != 0 {
		t.Fatalf("%d parquet, %d stats, temps %v", len(parquet), len(stats), temps)
	}
}
