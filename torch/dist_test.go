package torch

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func init() {
	childRoles["collectives"] = collectivesRole
}

// collectivesRole runs every collective once on rank-specific inputs and records the
// results for TestCollectivesAcrossTwoProcesses.
func collectivesRole(t *testing.T, pg *ProcessGroup, out string) {
	r := float64(pg.Rank())
	res := map[string][]float64{}
	// 16-byte buckets split the list into several, and pack the two small tensors with
	// others; 25 MB puts all of one dtype in one bucket.
	for _, bucket := range []int64{16, DefaultBucketBytes} {
		a := Arange(0, 12, 1, Float32, CPU).Reshape(3, 4).AddScalar(100 * r)
		b := Arange(0, 5, 1, Float64, CPU).MulScalar(r + 1)
		c := FromInt64([]int64{int64(r) + 1, 7}, 2)
		nc := Arange(0, 12, 1, Float32, CPU).Reshape(4, 3).MulScalar(r+2).Transpose(0, 1) // not contiguous
		if err := pg.AllReduce([]*Tensor{a, b, c, nc}, DistSum, bucket); err != nil {
			t.Fatal(err)
		}
		for name, x := range map[string]*Tensor{"a": a, "b": b, "c": c, "nc": nc.Contiguous()} {
			res[fmt.Sprintf("sum/%d/%s", bucket, name)] = distValues(t, x)
		}
	}
	avg := Full(r+1, Float32, CPU, 4)
	mx := FromInt64([]int64{int64(r), -int64(r)}, 2)
	if err := errors.Join(pg.AllReduce([]*Tensor{avg}, DistAvg, DefaultBucketBytes),
		pg.AllReduce([]*Tensor{mx}, DistMax, DefaultBucketBytes)); err != nil {
		t.Fatal(err)
	}
	res["avg"], res["max"] = distValues(t, avg), distValues(t, mx)

	g := NewGenerator(uint64(10 + pg.Rank()))
	defer g.Close()
	w := Randn(g, Float32, CPU, 3, 5)
	if err := w.SetRequiresGrad(true); err != nil {
		t.Fatal(err)
	}
	v := Randn(g, Float64, CPU, 7)
	nt := Randn(g, Float32, CPU, 4, 3).Transpose(0, 1)
	res["before/w"], res["before/v"], res["before/nt"] = distValues(t, w), distValues(t, v), distValues(t, nt)
	if err := pg.Broadcast([]*Tensor{w, v, nt}, 0, 32); err != nil {
		t.Fatal(err)
	}
	res["after/w"], res["after/v"], res["after/nt"] = distValues(t, w), distValues(t, v), distValues(t, nt)
	if !w.RequiresGrad() {
		t.Fatal("broadcast dropped requires_grad")
	}

	x := Arange(0, 6, 1, Float32, CPU).Reshape(2, 3).AddScalar(10 * r)
	all := pg.AllGather(x)
	res["gather"] = distValues(t, all)
	res["gather/shape"] = []float64{float64(all.Size(0)), float64(all.Size(1))}
	if err := pg.Barrier(); err != nil {
		t.Fatal(err)
	}
	writeResult(t, out, pg, res)
}

func TestCollectivesAcrossTwoProcesses(t *testing.T) {
	procs, out := startRanks(t, "collectives", 2, 20*time.Second)
	waitAll(t, procs, 60*time.Second)
	var res [2]map[string][]float64
	for r := range res {
		readResult(t, out, r, &res[r])
	}
	seq := func(n int, f func(i int) float64) []float64 {
		v := make([]float64, n)
		for i := range v {
			v[i] = f(i)
		}
		return v
	}
	t.Run("AllReduceSumsOnEveryRankWhateverTheBuckets", func(t *testing.T) {
		want := map[string][]float64{
			"a": seq(12, func(i int) float64 { return 2*float64(i) + 100 }),
			"b": seq(5, func(i int) float64 { return 3 * float64(i) }),
			"c": {3, 14},
			// nc is the transpose of arange(12).view(4,3) times (2+3)
			"nc": seq(12, func(i int) float64 { return 5 * float64((i%4)*3+i/4) }),
		}
		for _, bucket := range []int64{16, DefaultBucketBytes} {
			for name, w := range want {
				key := fmt.Sprintf("sum/%d/%s", bucket, name)
				for r := range res {
					if !distClose(res[r][key], w, 0) {
						t.Errorf("rank %d %s = %v, want %v", r, key, res[r][key], w)
					}
				}
			}
		}
	})
	t.Run("AverageIsTheSumOverTheWorldAndMaxTheLargest", func(t *testing.T) {
		for r := range res {
			if !distClose(res[r]["avg"], []float64{1.5, 1.5, 1.5, 1.5}, 0) || !distClose(res[r]["max"], []float64{1, 0}, 0) {
				t.Errorf("rank %d: avg %v (want 1.5s), max %v (want [1 0])", r, res[r]["avg"], res[r]["max"])
			}
		}
	})
	t.Run("BroadcastMakesRank1EqualRank0", func(t *testing.T) {
		for _, name := range []string{"w", "v", "nt"} {
			if distClose(res[0]["before/"+name], res[1]["before/"+name], 1e-3) {
				t.Fatalf("%s: the ranks started equal; the test proves nothing", name)
			}
			for r := range res {
				if !distClose(res[r]["after/"+name], res[0]["before/"+name], 0) {
					t.Errorf("rank %d %s after broadcast = %v, want rank 0's %v", r, name, res[r]["after/"+name], res[0]["before/"+name])
				}
			}
		}
	})
	t.Run("AllGatherConcatenatesInRankOrder", func(t *testing.T) {
		want := append(seq(6, func(i int) float64 { return float64(i) }), seq(6, func(i int) float64 { return float64(i) + 10 })...)
		for r := range res {
			if !distClose(res[r]["gather"], want, 0) || !distClose(res[r]["gather/shape"], []float64{4, 3}, 0) {
				t.Errorf("rank %d gathered %v shape %v, want %v shape [4 3]", r, res[r]["gather"], res[r]["gather/shape"], want)
			}
		}
	})
}

// A group of one needs no peer: the argument checks run before any collective starts,
// so a bad call fails on its own rank without putting the ranks out of step.
func TestCollectiveArgumentErrorsNameTheProblem(t *testing.T) {
	pg, err := NewProcessGroup(DistConfig{DistEnv: DistEnv{WorldSize: 1, MasterAddr: "127.0.0.1", MasterPort: freePort(t),
		GlooInterfaces: []string{"lo"}}, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	f := Ones(Float32, CPU, 3)
	cases := []struct {
		name string
		err  error
		want string
	}{
		{"zero bucket", pg.AllReduce([]*Tensor{f}, DistSum, 0), "bucket size 0"},
		{"average of integers", pg.AllReduce([]*Tensor{FromInt64([]int64{1}, 1)}, DistAvg, 64), "cannot be averaged"},
		{"root outside the world", pg.Broadcast([]*Tensor{f}, 3, 64), "root 3 is not in a world of 1"},
		{"gather of a scalar", pg.AllGather(Full(1, Float32, CPU)).Err(), "scalar"},
		{"grad sync of a tensor without grad", func() error { _, err := NewGradSync(pg, []*Tensor{f}, 64); return err }(),
			"parameter 0 is not a leaf tensor that requires grad"},
	}
	for _, c := range cases {
		if c.err == nil || !strings.Contains(c.err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error containing %q", c.name, c.err, c.want)
		}
	}
	// The group is still usable after the refused calls.
	if err := pg.AllReduce([]*Tensor{f}, DistAvg, 64); err != nil {
		t.Fatal(err)
	}
	if got := distValues(t, f); !distClose(got, []float64{1, 1, 1}, 0) {
		t.Fatalf("average over a world of one = %v", got)
	}
	pg.Close()
	if err := pg.Barrier(); err == nil || !strings.Contains(err.Error(), "after Close") {
		t.Fatalf("barrier after Close: %v", err)
	}
}

func TestRendezvousWithoutAllRanksFailsWithinTimeout(t *testing.T) {
	const timeout = 1500 * time.Millisecond
	for _, c := range []struct {
		name string
		rank int
		want string
	}{
		{"rank 0 waits for a rank that never comes", 0, "rank 0 of 2"},
		{"rank 1 finds no store", 1, "rank 1 of 2"},
	} {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			pg, err := NewProcessGroup(DistConfig{DistEnv: DistEnv{Rank: c.rank, WorldSize: 2, MasterAddr: "127.0.0.1",
				MasterPort: freePort(t), GlooInterfaces: []string{"lo"}}, Timeout: timeout})
			elapsed := time.Since(start)
			if err == nil {
				pg.Close()
				t.Fatal("joined a group whose other rank never started")
			}
			t.Logf("after %v: %v", elapsed.Round(time.Millisecond), err)
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not say %q", err, c.want)
			}
			// A late rank must still be waited for, so giving up early is a failure too.
			if elapsed < timeout-100*time.Millisecond || elapsed > timeout+2*time.Second {
				t.Errorf("gave up after %v, the timeout is %v", elapsed, timeout)
			}
		})
	}
}
