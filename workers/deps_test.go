package workers_test

import (
	"os/exec"
	"strings"
	"testing"
)

// The worker loop knows no tensors: the model stage is handed in through Labeler, so
// neither it nor the coordinator links libtorch or the model code.
func TestWorkersAndCoordinatorLinkNoModelCode(t *testing.T) {
	for _, pkg := range []string{".", "../coordinator", "../pipeline"} {
		out, err := exec.Command("go", "list", "-deps", pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		for _, dep := range strings.Fields(string(out)) {
			for _, banned := range []string{"/torch", "/blip", "/captioner", "/filter", "/imageproc", "/modelstage"} {
				if strings.HasPrefix(dep, "github.com/capfilt/capfilt") && strings.HasSuffix(dep, banned) ||
					strings.Contains(dep, "github.com/capfilt/capfilt"+banned+"/") {
					t.Errorf("%s depends on %s", pkg, dep)
				}
			}
		}
	}
}
