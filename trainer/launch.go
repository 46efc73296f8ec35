package trainer

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"reflect"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// LaunchConfig starts the processes of a data-parallel job on this machine, as
// torchrun --nproc-per-node does.
type LaunchConfig struct {
	Procs int
	// Exe and Args are the command each process runs (default Exe: this executable).
	Exe  string
	Args []string
	// Env is every process's environment before the launcher's variables (default:
	// this process's).
	Env []string
	// Stdout and Stderr get rank 0's output as it is and the other ranks' lines
	// prefixed with "[rank N] " (nil: discarded).
	Stdout, Stderr io.Writer
	// MasterAddr and MasterPort are where rank 0 hosts the rendezvous (default
	// 127.0.0.1 and a free port).
	MasterAddr string
	MasterPort int
	// Grace is how long the other processes get to end on their own once one has
	// failed (they fail at their next collective) before they are killed (default 1m).
	Grace time.Duration
}

// RankError says which process of a launched job failed first, and how.
type RankError struct {
	Rank int
	Err  error
}

func (e *RankError) Error() string { return fmt.Sprintf("rank %d: %v", e.Rank, e.Err) }
func (e *RankError) Unwrap() error { return e.Err }

// LaunchLocal runs the job's processes with RANK, WORLD_SIZE, LOCAL_RANK,
// LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT set and waits for them. When one
// fails, the others get Grace to end before they are killed, and the error names the
// first that failed. ctx ending sends every process SIGTERM.
func LaunchLocal(ctx context.Context, c LaunchConfig) error {
	if c.Procs < 1 {
		return fmt.Errorf("launch: %d processes", c.Procs)
	}
	if c.Exe == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("launch: %w", err)
		}
		c.Exe = exe
	}
	if c.Env == nil {
		c.Env = os.Environ()
	}
	if c.MasterAddr == "" {
		c.MasterAddr = "127.0.0.1"
	}
	if c.MasterPort == 0 {
		port, err := freePort(c.MasterAddr)
		if err != nil {
			return fmt.Errorf("launch: %w", err)
		}
		c.MasterPort = port
	}
	if c.Grace <= 0 {
		c.Grace = time.Minute
	}
	same := c.Stdout != nil && reflect.TypeOf(c.Stdout).Comparable() && c.Stdout == c.Stderr
	c.Stdout, c.Stderr = lockWriter(c.Stdout), lockWriter(c.Stderr)
	if same {
		c.Stderr = c.Stdout
	}
	type exit struct {
		rank int
		err  error
	}
	exits := make(chan exit, c.Procs)
	cmds := make([]*exec.Cmd, c.Procs)
	var copying sync.WaitGroup
	for rank := range c.Procs {
		cmd := exec.Command(c.Exe, c.Args...)
		// Each rank leads a process group of its own, so that ending it ends whatever
		// it started too.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		cmd.Env = append(append([]string(nil), c.Env...),
			"RANK="+strconv.Itoa(rank), "WORLD_SIZE="+strconv.Itoa(c.Procs),
			"LOCAL_RANK="+strconv.Itoa(rank), "LOCAL_WORLD_SIZE="+strconv.Itoa(c.Procs),
			"MASTER_ADDR="+c.MasterAddr, "MASTER_PORT="+strconv.Itoa(c.MasterPort))
		var parentEnds []*os.File
		if rank == 0 {
			cmd.Stdout, cmd.Stderr = c.Stdout, c.Stderr
		} else {
			for _, p := range []struct {
				dst io.Writer
				set func(*os.File)
			}{{c.Stdout, func(w *os.File) { cmd.Stdout = w }}, {c.Stderr, func(w *os.File) { cmd.Stderr = w }}} {
				if p.dst == nil {
					continue
				}
				r, w, err := os.Pipe()
				if err != nil {
					return fmt.Errorf("launch: %w", err)
				}
				p.set(w)
				parentEnds = append(parentEnds, w)
				copying.Add(1)
				go func() {
					defer copying.Done()
					defer r.Close()
					sc := bufio.NewScanner(r)
					sc.Buffer(make([]byte, 64<<10), 1<<20)
					for sc.Scan() {
						fmt.Fprintf(p.dst, "[rank %d] %s\n", rank, sc.Text())
					}
					io.Copy(io.Discard, r)
				}()
			}
		}
		if err := cmd.Start(); err != nil {
			for _, started := range cmds[:rank] {
				signalGroup(started, syscall.SIGKILL)
			}
			return fmt.Errorf("launch: rank %d: %w", rank, err)
		}
		for _, w := range parentEnds {
			w.Close() // the child holds its own copy: the reader ends when the child does
		}
		cmds[rank] = cmd
		go func() { exits <- exit{rank, cmd.Wait()} }()
	}
	var first *RankError
	var deadline <-chan time.Time
	for done := 0; done < c.Procs; {
		select {
		case e := <-exits:
			done++
			if e.err != nil && first == nil {
				first = &RankError{Rank: e.rank, Err: e.err}
				deadline = time.After(c.Grace)
			}
		case <-deadline:
			for _, cmd := range cmds {
				signalGroup(cmd, syscall.SIGKILL)
			}
			deadline = nil
		case <-ctx.Done():
			for _, cmd := range cmds {
				signalGroup(cmd, syscall.SIGTERM)
			}
			if deadline == nil {
				deadline = time.After(c.Grace)
			}
			ctx = context.Background()
		}
	}
	copying.Wait()
	if first != nil {
		return first
	}
	return nil
}

// lockedWriter serialises the writes of the ranks' output copiers.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func lockWriter(w io.Writer) io.Writer {
	if w == nil {
		return nil
	}
	return &lockedWriter{w: w}
}

// signalGroup sends sig to the process group cmd leads.
func signalGroup(cmd *exec.Cmd, sig syscall.Signal) {
	if cmd.Process != nil {
		syscall.Kill(-cmd.Process.Pid, sig)
	}
}

// freePort asks the kernel for a port that is free now.
func freePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
