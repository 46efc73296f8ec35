package main

import (
	"encoding/json"
	"time"

	"github.com/spf13/cobra"

	"github.com/capfilt/capfilt/coordinator"
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
					line, _ := json.Marshal(s)
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
