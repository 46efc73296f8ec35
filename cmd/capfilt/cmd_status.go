package main

import (
	"encoding/json"
	"time"

	"github.com/spf13/cobra"

	"github.com/capfilt/capfilt/coordinator"
	"github.com/capfilt/capfilt/pipeline"
)

type statusCommand struct {
	nats     natsOptions
	Run      string
	JSON     bool
	Watch    bool
	Interval time.Duration
}

func newStatusCommand(a *app) *cobra.Command {
	c := &statusCommand{}
	cmd := &cobra.Command{
		Use:   "status --run NAME [--json] [--watch]",
		Short: "Show a run's progress: shards by state, throughput, ETA, failed shards and their errors",
		Long: `Reads only NATS (the run's settings and shard states), so it works from any machine that
reaches the server. --watch prints the status again every --interval until the run is
complete; --json prints it as JSON (one object per line with --watch).`,
		Args:    cobra.NoArgs,
		PreRunE: func(cmd *cobra.Command, _ []string) error { return a.positiveDuration("interval", c.Interval) },
		RunE: func(cmd *cobra.Command, _ []string) error {
			run, every := c.Run, c.Interval
			if run == "" {
				return usagef("no run name given (--run)")
			}
			nc, q, err := c.nats.openQueue(a, cmd, false)
			if err != nil {
				return err
			}
			defer nc.Close()
			coord := coordinator.New(q, coordinator.Config{Log: a.log, Version: capfiltVersion()})
			asJSON := c.JSON
			show := func(s *coordinator.RunStatus) {
				if asJSON {
					line, err := statusJSON(s)
					if err != nil {
						a.log.Error("status not printed", "err", err)
						return
					}
					a.printf("%s\n", line)
					return
				}
				printStatus(a.stdout, s)
			}
			if !c.Watch {
				s, err := coord.Status(cmd.Context(), run)
				if err != nil {
					return asUsage(err)
				}
				show(s)
				return nil
			}
			first := true
			_, err = coord.Watch(cmd.Context(), run, every, func(s *coordinator.RunStatus) {
				if !first && !asJSON {
					a.printf("\n%s\n", time.Now().Format(time.TimeOnly))
				}
				first = false
				show(s)
			})
			return asUsage(err)
		},
	}
	f := cmd.Flags()
	addRunNameFlag(f, &c.Run)
	addJSONFlag(f, &c.JSON)
	f.BoolVar(&c.Watch, "watch", false, "print the status again every --interval until the run is complete")
	f.DurationVar(&c.Interval, "interval", 2*time.Second, "how often --watch prints")
	c.nats.AddFlags(f)
	perInvocation(f, "watch")
	return cmd
}

// shardStates is every state a shard can be in, as status --json lists them.
var shardStates = []pipeline.State{pipeline.Pending, pipeline.Running, pipeline.Done, pipeline.Failed, pipeline.Dead}

// statusJSON is a run's status as --json prints it: by_state names every state (zeros
// included) and lists are [] rather than null, so a script can index them without
// checking; keys are snake_case throughout.
func statusJSON(s *coordinator.RunStatus) ([]byte, error) {
	v := *s
	v.ByState = map[pipeline.State]int{}
	for _, st := range shardStates {
		v.ByState[st] = 0
	}
	for st, n := range s.ByState {
		v.ByState[st] = n
	}
	if v.Problems == nil {
		v.Problems = []pipeline.ShardState{}
	}
	if v.Workers == nil {
		v.Workers = []coordinator.WorkerStatus{}
	}
	if v.Settings.Inputs == nil {
		v.Settings.Inputs = []string{}
	}
	return json.Marshal(v)
}
