package torch

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const envVictim = "CAPFILT_DIST_VICTIM"

func init() {
	childRoles["stall"] = stallRole
	childRoles["barrier"] = func(t *testing.T, pg *ProcessGroup, out string) {
		if err := pg.Barrier(); err != nil {
			t.Fatal(err)
		}
	}
}

// stallRole: every rank all-reduces once and says READY; then the victim sleeps (the
// parent kills or stops it) while the others keep all-reducing until that fails.
func stallRole(t *testing.T, pg *ProcessGroup, out string) {
	victim, err := strconv.Atoi(os.Getenv(envVictim))
	if err != nil {
		t.Fatal(err)
	}
	x := Ones(Float32, CPU, 1024)
	if err := pg.AllReduce([]*Tensor{x}, DistSum, DefaultBucketBytes); err != nil {
		t.Fatal(err)
	}
	fmt.Println("READY")
	if pg.Rank() == victim {
		time.Sleep(time.Hour)
	}
	for {
		if err := pg.AllReduce([]*Tensor{x}, DistSum, DefaultBucketBytes); err != nil {
			fmt.Println("COLLECTIVE FAILED:", err)
			os.Exit(3)
		}
	}
}

func TestRankThatDiesOrHangsEndsTheOthersWithinTheTimeout(t *testing.T) {
	for _, c := range []struct {
		name    string
		victim  int
		sig     syscall.Signal
		timeout time.Duration
		want    string // in the survivor's error
	}{
		{"rank 1 killed", 1, syscall.SIGKILL, 10 * time.Second, "the connection to a rank broke"},
		{"rank 0, the store's host, killed", 0, syscall.SIGKILL, 10 * time.Second, "the connection to a rank broke"},
		{"rank 1 hung", 1, syscall.SIGSTOP, 2 * time.Second, "no answer within 2s: a rank hung"},
	} {
		t.Run(c.name, func(t *testing.T) {
			procs, _ := startRanks(t, "stall", 2, c.timeout, envVictim+"="+strconv.Itoa(c.victim))
			for _, p := range procs {
				select {
				case <-p.ready:
				case err := <-p.done:
					t.Fatalf("rank %d ended before READY: %v\n%s", p.rank, err, p.output)
				case <-time.After(60 * time.Second):
					t.Fatalf("rank %d not READY after 60s\n%s", p.rank, p.output)
				}
			}
			victim, survivor := procs[c.victim], procs[1-c.victim]
			signalled := time.Now()
			if err := victim.cmd.Process.Signal(c.sig); err != nil {
				t.Fatal(err)
			}
			var err error
			select {
			case err = <-survivor.done:
			case <-time.After(c.timeout + 30*time.Second):
				t.Fatalf("rank %d still running %v after rank %d got %v\n%s", survivor.rank, c.timeout+30*time.Second, victim.rank, c.sig, survivor.output)
			}
			elapsed := survivor.exited.Sub(signalled)
			victim.cmd.Process.Signal(syscall.SIGKILL)
			out := survivor.output.String()
			line := out[max(0, strings.Index(out, "COLLECTIVE FAILED")):]
			if i := strings.IndexByte(line, '\n'); i >= 0 {
				line = line[:i]
			}
			t.Logf("rank %d exited %v after rank %d got %v (timeout %v): %s", survivor.rank, elapsed.Round(time.Millisecond), victim.rank, c.sig, c.timeout, line)
			if ee, ok := err.(interface{ ExitCode() int }); !ok || ee.ExitCode() != 3 {
				t.Fatalf("rank %d: exit %v, want the failed collective's exit 3\n%s", survivor.rank, err, out)
			}
			wantRank := fmt.Sprintf("all-reduce (rank %d of 2)", survivor.rank)
			if !strings.Contains(out, wantRank) || !strings.Contains(out, c.want) {
				t.Errorf("rank %d's error does not say %q and %q:\n%s", survivor.rank, wantRank, c.want, out)
			}
			// Measured from the signal, so the bound is the timeout plus the process's exit.
			if elapsed > c.timeout+time.Second {
				t.Errorf("rank %d took %v to fail, the timeout is %v", survivor.rank, elapsed, c.timeout)
			}
		})
	}
}

// A worker may start long before rank 0: it keeps knocking for the whole timeout.
func TestRankStartedBeforeTheHostWaitsForIt(t *testing.T) {
	job := newJob(t, "barrier", 2, 10*time.Second)
	late := job.start(t, 1)
	time.Sleep(2 * time.Second)
	waitAll(t, []*rankProc{job.start(t, 0), late}, 60*time.Second)
}
