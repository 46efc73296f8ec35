package trainer

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// LaunchLocal gives each process its rank as torchrun does, prefixes the other ranks'
// output, names the first process that failed, and kills the rest after the grace
// period instead of waiting for them.
func TestLaunchLocalNamesTheFailedRankAndEndsTheOthers(t *testing.T) {
	var out bytes.Buffer
	start := time.Now()
	err := LaunchLocal(context.Background(), LaunchConfig{Procs: 3, Exe: "/bin/sh",
		Args:   []string{"-c", `echo "rank $RANK of $WORLD_SIZE local $LOCAL_RANK at $MASTER_ADDR:$MASTER_PORT"; if [ "$RANK" = 1 ]; then exit 3; fi; sleep 30`},
		Stdout: &out, Grace: 300 * time.Millisecond})
	var re *RankError
	if !errors.As(err, &re) || re.Rank != 1 || !strings.Contains(err.Error(), "exit status 3") {
		t.Fatalf("error %v, want rank 1's exit status 3", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("the other ranks were not ended: %v", d)
	}
	for _, want := range []string{"rank 0 of 3 local 0 at 127.0.0.1:", "[rank 1] rank 1 of 3 local 1", "[rank 2] rank 2 of 3 local 2"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}
