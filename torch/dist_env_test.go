package torch

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func lookupIn(env map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := env[k]; return v, ok }
}

func TestDistEnvReadsTorchrunVariables(t *testing.T) {
	got, err := distEnvFrom(lookupIn(map[string]string{
		"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2",
		"MASTER_ADDR": "node0.cluster", "MASTER_PORT": "29500",
		"TORCHELASTIC_USE_AGENT_STORE": "True", "TORCHELASTIC_RESTART_COUNT": "2",
		"GLOO_SOCKET_IFNAME": "eth0, ib0",
	}))
	if err != nil {
		t.Fatal(err)
	}
	want := DistEnv{Rank: 3, WorldSize: 4, LocalRank: 1, LocalWorldSize: 2, MasterAddr: "node0.cluster", MasterPort: 29500,
		AgentStore: true, RestartCount: 2, GlooInterfaces: []string{"eth0", "ib0"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	// Environ is what a launcher hands its children: reading it back gives the same.
	back := map[string]string{}
	for _, kv := range want.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		back[k] = v
	}
	if again, err := distEnvFrom(lookupIn(back)); err != nil || !reflect.DeepEqual(again, want) {
		t.Fatalf("Environ read back: %+v, %v", again, err)
	}
}

func TestDistEnvWithoutLocalRankIsOneProcessPerNode(t *testing.T) {
	// Kubernetes PyTorchJob sets only the four required variables.
	got, err := distEnvFrom(lookupIn(map[string]string{"RANK": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "a", "MASTER_PORT": "1"}))
	if err != nil || got.LocalRank != 0 || got.LocalWorldSize != 0 || got.AgentStore {
		t.Fatalf("got %+v, %v", got, err)
	}
}

func TestDistEnvWithNothingSetIsNotDistributed(t *testing.T) {
	if _, err := distEnvFrom(lookupIn(nil)); !errors.Is(err, ErrNoDistEnv) {
		t.Fatalf("got %v, want ErrNoDistEnv", err)
	}
}

func TestDistEnvBadValuesNameTheVariable(t *testing.T) {
	base := map[string]string{"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}
	for _, c := range []struct {
		set  map[string]string
		want string
	}{
		{map[string]string{"MASTER_PORT": ""}, "MASTER_PORT not set"},
		{map[string]string{"RANK": "", "MASTER_ADDR": ""}, "RANK, MASTER_ADDR not set"},
		{map[string]string{"RANK": "first"}, `RANK="first" is not an integer`},
		{map[string]string{"RANK": "2"}, "RANK=2 is not in 0..1"},
		{map[string]string{"WORLD_SIZE": "0"}, "WORLD_SIZE=0 is not 1 or more"},
		{map[string]string{"MASTER_PORT": "70000"}, "MASTER_PORT=70000 is not in 1..65535"},
		{map[string]string{"LOCAL_RANK": "-1"}, "LOCAL_RANK=-1 is not 0 or more"},
		{map[string]string{"LOCAL_WORLD_SIZE": "2", "LOCAL_RANK": "2"}, "LOCAL_RANK=2 is not in 0..1"},
		{map[string]string{"LOCAL_WORLD_SIZE": "3"}, "LOCAL_WORLD_SIZE=3 is not in 1..2"},
		{map[string]string{"TORCHELASTIC_USE_AGENT_STORE": "yes"}, `TORCHELASTIC_USE_AGENT_STORE="yes" is neither True nor False`},
		{map[string]string{"TORCHELASTIC_USE_AGENT_STORE": "True"}, "TORCHELASTIC_RESTART_COUNT not set"},
	} {
		env := map[string]string{}
		for k, v := range base {
			env[k] = v
		}
		for k, v := range c.set {
			env[k] = v
		}
		_, err := distEnvFrom(lookupIn(env))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: got %v, want an error containing %q", c.set, err, c.want)
		}
	}
}
