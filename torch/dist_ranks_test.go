package torch

// The multi-process harness: the test binary re-executes itself as the ranks of a job
// (TestDistChild with CAPFILT_DIST_ROLE set), launched the way torchrun launches
// workers, on loopback with a port picked here.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	envRole    = "CAPFILT_DIST_ROLE"
	envOut     = "CAPFILT_DIST_OUT"
	envTimeout = "CAPFILT_DIST_TIMEOUT_MS"
)

// childRoles are the bodies a rank process can run. Each gets its group and a place to
// write what the parent checks.
var childRoles = map[string]func(t *testing.T, pg *ProcessGroup, out string){}

// TestDistChild is not a test of its own: it is the body of a rank process started by
// startRanks, and skips when run directly.
func TestDistChild(t *testing.T) {
	role := os.Getenv(envRole)
	if role == "" {
		t.Skip("only runs as a rank process started by startRanks")
	}
	body, ok := childRoles[role]
	if !ok {
		t.Fatalf("unknown role %q", role)
	}
	env, err := DistEnvFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	ms, err := strconv.Atoi(os.Getenv(envTimeout))
	if err != nil {
		t.Fatalf("%s: %v", envTimeout, err)
	}
	pg, err := NewProcessGroup(DistConfig{DistEnv: env, Timeout: time.Duration(ms) * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	body(t, pg, os.Getenv(envOut))
}

// freePort asks the kernel for a loopback port nobody listens on.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// rankProc is one running rank.
type rankProc struct {
	rank   int
	cmd    *exec.Cmd
	output *bytes.Buffer // stdout and stderr together
	ready  chan struct{} // closed when the rank prints READY
	done   chan error    // the process's exit
	exited time.Time
}

type syncWriter struct {
	mu  *sync.Mutex
	buf *bytes.Buffer
}

func (w syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

// startRanks launches world rank processes running role, and kills what is left of
// them when the test ends.
func startRanks(t testing.TB, role string, world int, timeout time.Duration, extraEnv ...string) (procs []*rankProc, out string) {
	t.Helper()
	job := newJob(t, role, world, timeout, extraEnv...)
	for r := 0; r < world; r++ {
		procs = append(procs, job.start(t, r))
	}
	return procs, job.out
}

// rankJob is one job's launch settings, for tests that start its ranks one by one.
type rankJob struct {
	role, out string
	world     int
	port      int
	timeout   time.Duration
	extraEnv  []string
}

func newJob(t testing.TB, role string, world int, timeout time.Duration, extraEnv ...string) *rankJob {
	return &rankJob{role: role, out: t.TempDir(), world: world, port: freePort(t), timeout: timeout, extraEnv: extraEnv}
}

// start launches rank r the way torchrun launches a worker.
func (j *rankJob) start(t testing.TB, r int) *rankProc {
	t.Helper()
	env := DistEnv{Rank: r, WorldSize: j.world, LocalRank: r, LocalWorldSize: j.world, MasterAddr: "127.0.0.1",
		MasterPort: j.port, GlooInterfaces: []string{"lo"}}
	cmd := exec.Command(os.Args[0], "-test.run=^TestDistChild$", "-test.v")
	cmd.Env = append(append(append(os.Environ(), env.Environ()...),
		envRole+"="+j.role, envOut+"="+j.out, envTimeout+"="+strconv.FormatInt(j.timeout.Milliseconds(), 10)), j.extraEnv...)
	p := &rankProc{rank: r, cmd: cmd, output: &bytes.Buffer{}, ready: make(chan struct{}), done: make(chan error, 1)}
	var mu sync.Mutex
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = syncWriter{&mu, p.output}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	go func() {
		sc := bufio.NewScanner(stdout)
		once := sync.Once{}
		for sc.Scan() {
			line := sc.Text()
			syncWriter{&mu, p.output}.Write([]byte(line + "\n"))
			if line == "READY" {
				once.Do(func() { close(p.ready) })
			}
		}
		err := cmd.Wait()
		p.exited = time.Now()
		p.done <- err
	}()
	return p
}

// waitAll waits for every rank to exit successfully within limit.
func waitAll(t testing.TB, procs []*rankProc, limit time.Duration) {
	t.Helper()
	deadline := time.After(limit)
	for _, p := range procs {
		select {
		case err := <-p.done:
			if err != nil {
				t.Fatalf("rank %d: %v\n%s", p.rank, err, p.output)
			}
		case <-deadline:
			for _, q := range procs {
				q.cmd.Process.Signal(syscall.SIGKILL)
			}
			t.Fatalf("rank %d still running after %v\n%s", p.rank, limit, p.output)
		}
	}
}

// writeResult stores a rank's findings for the parent.
func writeResult(t *testing.T, out string, pg *ProcessGroup, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(out, fmt.Sprintf("rank%d.json", pg.Rank())), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func readResult(t *testing.T, out string, rank int, v any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(out, fmt.Sprintf("rank%d.json", rank)))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatal(err)
	}
}

func distValues(t *testing.T, x *Tensor) []float64 {
	t.Helper()
	v, err := x.ToDType(Float64).Float64s()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func distClose(a, b []float64, tol float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Abs(a[i]-b[i]) > tol*max(1, math.Abs(a[i]), math.Abs(b[i])) {
			return false
		}
	}
	return true
}
