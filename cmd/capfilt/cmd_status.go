package main

import (
	"encoding/json"
	"time"

	"github.com/spf13/cobra"

	"github.com/capfilt/capfilt/coordinator"
)

func newStatusCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "status --run NAME [--json] [--watch]",
		Short: "Show a run's progress: shards by state, throughput, ETA, failed shards and their errors",
		Long: `Reads only NATS (the run's settings and shard states), so it works from any machine that
reaches the server. --watch prints the status again every --interval until the run is
complete; --json prints it as JSON (one object per line with --watch).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			run := a.v.GetString("run")
			if run == "" {
				return usagef("no run name given (--run)")
			}
			every := a.v.GetDuration("interval")
			if every <= 0 {
				return usagef("interval %v: must be positive", every)
			}
			nc, q, err := a.connectQueue(cmd, false)
			if err != nil {
				return err
			}
			defer nc.Close()
			coord := coordinator.New(q, coordinator.Config{Log: a.log, Version: capfiltVersion()})
			asJSON := a.v.GetBool("json")
			show := func(s *coordinator.RunStatus) {
				if asJSON {
					line, _ := json.Marshal(s)
					a.printf("%s\n", line)
					return
				}
				printStatus(a.stdout, s)
			}
			if !a.v.GetBool("watch") {
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
	f.String("run", "", "run name")
	f.Bool("json", false, "print the status as JSON")
	f.Bool("watch", false, "print the status again every --interval until the run is complete")
	f.Duration("interval", 2*time.Second, "how often --watch prints")
	addNATSFlags(cmd)
	return cmd
}
