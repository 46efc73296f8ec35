package blip

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// statusKB reads a field (VmRSS, VmHWM) of /proc/self/status in kB.
func statusKB(field string) (int64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, field+":") {
			f := strings.Fields(line)
			return strconv.ParseInt(f[1], 10, 64)
		}
	}
	return 0, fmt.Errorf("no %s in /proc/self/status", field)
}

// TestLoadPeakMemoryHelper is the child process of TestLoadingABaseCheckpointPeaksBelow:
// it loads the checkpoint, touches every weight, and prints how far its peak resident
// memory rose above what it was before loading.
func TestLoadPeakMemoryHelper(t *testing.T) {
	dir := os.Getenv("CAPFILT_LOAD_MEMORY_DIR")
	if dir == "" {
		t.Skip("helper process only")
	}
	before, err := statusKB("VmRSS")
	if err != nil {
		t.Fatal(err)
	}
	m, _, err := Load(dir, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var total float64
	for _, p := range m.Params() {
		v, err := p.Tensor().Sum(false).Item()
		if err != nil {
			t.Fatal(err)
		}
		total += v
	}
	peak, err := statusKB("VmHWM")
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("PEAK_DELTA_KB %d (checksum %g)\n", peak-before, total)
}

// Loading maps the weights instead of copying them: a base checkpoint's load peaks at
// no more than 1.3× its file size.
func TestLoadingABaseCheckpointPeaksBelow1_3xItsSize(t *testing.T) {
	if testing.Short() {
		t.Skip("writes a 900 MB checkpoint")
	}
	m, err := New(Base(), Parts{Vision: true, TextDecoder: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.InitDeterministic(7); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	hf, orig := t.TempDir(), filepath.Join(t.TempDir(), "model.pth")
	if err := m.SaveHF(hf, nil); err != nil {
		t.Fatal(err)
	}
	if err := m.SaveOriginal(orig); err != nil {
		t.Fatal(err)
	}
	checkPeak(t, hf, filepath.Join(hf, "model.safetensors"))
	checkPeak(t, orig, orig)
}

func checkPeak(t *testing.T, path, file string) {
	t.Helper()
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestLoadPeakMemoryHelper$", "-test.v")
	cmd.Env = append(os.Environ(), "CAPFILT_LOAD_MEMORY_DIR="+path)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	var delta int64
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "PEAK_DELTA_KB ") {
			delta, _ = strconv.ParseInt(strings.Fields(line)[1], 10, 64)
		}
	}
	if delta == 0 {
		t.Fatalf("helper printed no peak:\n%s", out)
	}
	ratio := float64(delta*1024) / float64(fi.Size())
	t.Logf("%s: file %.0f MB, load peak +%.0f MB: %.2f× the file", filepath.Base(file), float64(fi.Size())/1e6, float64(delta)*1024/1e6, ratio)
	if ratio > 1.3 {
		t.Fatalf("loading %s peaked at %.2f× the checkpoint size (> 1.3)", file, ratio)
	}
}
