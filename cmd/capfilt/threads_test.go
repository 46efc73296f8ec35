package main

import (
	"strings"
	"testing"
)

// capfilt runs itself again under OMP_WAIT_POLICY=PASSIVE unless the user set a policy,
// which it keeps.
func TestCapfiltRunsUnderAPassiveOpenMPWaitPolicy(t *testing.T) {
	for _, tc := range []struct{ env, want string }{{"", "OpenMP wait policy PASSIVE"}, {"OMP_WAIT_POLICY=ACTIVE", "OpenMP wait policy ACTIVE"}} {
		c, stdout, stderr := capfiltCommand("version")
		env := []string{}
		for _, kv := range c.Env {
			if !strings.HasPrefix(kv, "OMP_WAIT_POLICY=") {
				env = append(env, kv)
			}
		}
		if tc.env != "" {
			env = append(env, tc.env)
		}
		c.Env = env
		if err := c.Run(); err != nil || !strings.Contains(stdout.String(), tc.want) {
			t.Errorf("capfilt version with %q: %v, %s%s; want %q", tc.env, err, stdout, stderr, tc.want)
		}
	}
}
