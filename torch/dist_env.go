package torch

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ErrNoDistEnv is returned by DistEnvFromEnv when none of RANK, WORLD_SIZE, MASTER_ADDR
// and MASTER_PORT is set: the process was not started by a distributed launcher.
var ErrNoDistEnv = errors.New("not launched for distributed training (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT unset)")

// DistEnv is what a torchrun-style launcher tells each process about its place in the
// job, read from the same variables torch.distributed reads, so torchrun, Slurm srun
// wrappers and Kubernetes PyTorchJob-style operators start capfilt unchanged.
type DistEnv struct {
	Rank      int // RANK: this process, 0 ≤ Rank < WorldSize
	WorldSize int // WORLD_SIZE: processes in the job
	// LOCAL_RANK picks this process's GPU on its node. It is 0 when unset: operators
	// that run one process per pod (PyTorchJob) do not set it.
	LocalRank int
	// LOCAL_WORLD_SIZE, processes on this node; 0 when the launcher does not say.
	LocalWorldSize int
	MasterAddr     string // MASTER_ADDR: where rank 0 (or the agent) hosts the TCPStore
	MasterPort     int    // MASTER_PORT
	// TORCHELASTIC_USE_AGENT_STORE=True: torchrun's agent hosts the store and every
	// rank, 0 included, joins it as a client, under keys of attempt RestartCount
	// (TORCHELASTIC_RESTART_COUNT).
	AgentStore   bool
	RestartCount int
	// GLOO_SOCKET_IFNAME: the network interfaces Gloo uses (comma-separated); empty for
	// the address this host's name resolves to.
	GlooInterfaces []string
}

// DistEnvFromEnv reads the launcher's variables from the process environment. It
// returns ErrNoDistEnv when none of the four required ones is set, and an error naming
// the variable when one is missing or malformed.
func DistEnvFromEnv() (DistEnv, error) { return distEnvFrom(os.LookupEnv) }

func distEnvFrom(lookup func(string) (string, bool)) (DistEnv, error) {
	required := []string{"RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"}
	var missing []string
	for _, k := range required {
		if v, ok := lookup(k); !ok || v == "" {
			missing = append(missing, k)
		}
	}
	if len(missing) == len(required) {
		return DistEnv{}, ErrNoDistEnv
	}
	if len(missing) > 0 {
		return DistEnv{}, fmt.Errorf("environment: %s not set (a distributed launch needs all of %s)",
			strings.Join(missing, ", "), strings.Join(required, ", "))
	}
	const maxInt = int(^uint(0) >> 1)
	var e DistEnv
	var err error
	intVar := func(name string, dst *int, lo, hi int, need bool) {
		v, ok := lookup(name)
		if err != nil || (!ok && !need) {
			return
		}
		if !ok {
			err = fmt.Errorf("environment: %s not set", name)
			return
		}
		n, perr := strconv.Atoi(strings.TrimSpace(v))
		switch {
		case perr != nil:
			err = fmt.Errorf("environment: %s=%q is not an integer", name, v)
		case n < lo && hi == maxInt:
			err = fmt.Errorf("environment: %s=%d is not %d or more", name, n, lo)
		case n < lo || n > hi:
			err = fmt.Errorf("environment: %s=%d is not in %d..%d", name, n, lo, hi)
		}
		*dst = n
	}
	intVar("WORLD_SIZE", &e.WorldSize, 1, maxInt, true)
	intVar("RANK", &e.Rank, 0, e.WorldSize-1, true)
	intVar("MASTER_PORT", &e.MasterPort, 1, 65535, true)
	intVar("LOCAL_WORLD_SIZE", &e.LocalWorldSize, 1, e.WorldSize, false)
	localMax := maxInt
	if e.LocalWorldSize > 0 {
		localMax = e.LocalWorldSize - 1
	}
	intVar("LOCAL_RANK", &e.LocalRank, 0, localMax, false)
	if err != nil {
		return DistEnv{}, err
	}
	e.MasterAddr, _ = lookup("MASTER_ADDR")
	e.MasterAddr = strings.TrimSpace(e.MasterAddr)
	if v, ok := lookup("TORCHELASTIC_USE_AGENT_STORE"); ok && v != "" {
		switch v {
		case "True":
			e.AgentStore = true
		case "False":
		default:
			return DistEnv{}, fmt.Errorf("environment: TORCHELASTIC_USE_AGENT_STORE=%q is neither True nor False", v)
		}
	}
	intVar("TORCHELASTIC_RESTART_COUNT", &e.RestartCount, 0, maxInt, e.AgentStore)
	if err != nil {
		return DistEnv{}, err
	}
	if v, ok := lookup("GLOO_SOCKET_IFNAME"); ok {
		for _, name := range strings.Split(v, ",") {
			if name = strings.TrimSpace(name); name != "" {
				e.GlooInterfaces = append(e.GlooInterfaces, name)
			}
		}
	}
	return e, nil
}

// Environ is e as the variables DistEnvFromEnv reads, for a launcher starting the
// process of rank e.Rank (append it to os.Environ()).
func (e DistEnv) Environ() []string {
	env := []string{
		"RANK=" + strconv.Itoa(e.Rank),
		"WORLD_SIZE=" + strconv.Itoa(e.WorldSize),
		"LOCAL_RANK=" + strconv.Itoa(e.LocalRank),
		"MASTER_ADDR=" + e.MasterAddr,
		"MASTER_PORT=" + strconv.Itoa(e.MasterPort),
	}
	if e.LocalWorldSize > 0 {
		env = append(env, "LOCAL_WORLD_SIZE="+strconv.Itoa(e.LocalWorldSize))
	}
	if e.AgentStore {
		env = append(env, "TORCHELASTIC_USE_AGENT_STORE=True", "TORCHELASTIC_RESTART_COUNT="+strconv.Itoa(e.RestartCount))
	}
	if len(e.GlooInterfaces) > 0 {
		env = append(env, "GLOO_SOCKET_IFNAME="+strings.Join(e.GlooInterfaces, ","))
	}
	return env
}
