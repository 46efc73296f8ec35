package testutil

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// RunHelper runs the test named test of this test binary in a child process (for what
// must be measured alone, such as peak memory) with env added to the environment, and
// returns what it printed. A child that fails fails t.
func RunHelper(t testing.TB, test string, env ...string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run", "^"+test+"$", "-test.v")
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper %s: %v\n%s", test, err, out)
	}
	return string(out)
}

// HelperValues reads the numbers a helper printed on its lines "PREFIX k=v k=v ...", and
// fails t when there are none.
func HelperValues(t testing.TB, out, prefix string) map[string]float64 {
	t.Helper()
	vals := map[string]float64{}
	for _, line := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(line, prefix+" "); ok {
			for _, kv := range strings.Fields(rest) {
				k, v, _ := strings.Cut(kv, "=")
				f, err := strconv.ParseFloat(v, 64)
				if err != nil {
					t.Fatalf("helper line %q: %s: %v", line, kv, err)
				}
				vals[k] = f
			}
		}
	}
	if len(vals) == 0 {
		t.Fatalf("helper printed no %s line:\n%s", prefix, out)
	}
	return vals
}
