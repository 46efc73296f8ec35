package main

import (
	"github.com/spf13/cobra"

	"github.com/capfilt/capfilt/coordinator"
)

type retryCommand struct {
	nats   natsOptions
	Run    string
	Failed bool
	Shards []string
}

func newRetryCommand(a *app) *cobra.Command {
	c := &retryCommand{}
	cmd := &cobra.Command{
		Use:   "retry --run NAME (--failed | --shard S ...)",
		Short: "Re-enqueue a run's dead shards, or chosen done or dead shards",
		Long: `--failed re-enqueues every dead shard (every attempt failed); --shard names one by id,
input URL or output stem (repeatable), to redo a dead or done shard. Each gets a new job
with a fresh set of attempts, and its outputs are overwritten.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			run := c.Run
			if run == "" {
				return usagef("no run name given (--run)")
			}
			req := coordinator.RetryRequest{Run: run, Dead: c.Failed, Shards: c.Shards}
			if !req.Dead && len(req.Shards) == 0 {
				return usagef("say what to retry: --failed, or --shard S")
			}
			nc, q, err := c.nats.openQueue(a, cmd, false)
			if err != nil {
				return err
			}
			defer nc.Close()
			coord := coordinator.New(q, coordinator.Config{Log: a.log, Version: capfiltVersion()})
			refs, err := coord.Retry(cmd.Context(), req)
			if err != nil {
				return asUsage(err)
			}
			if len(refs) == 0 {
				a.printf("run %s has no dead shard: nothing re-enqueued\n", run)
				return nil
			}
			for _, r := range refs {
				a.printf("re-enqueued %s %s\n", r.ID, r.URL)
			}
			a.printf("run %s: %d shards re-enqueued\n", run, len(refs))
			return nil
		},
	}
	f := cmd.Flags()
	addRunNameFlag(f, &c.Run)
	f.BoolVar(&c.Failed, "failed", false, "re-enqueue every dead shard")
	f.StringArrayVar(&c.Shards, "shard", nil, "a shard to redo: its id, input URL or output stem (repeatable)")
	c.nats.AddFlags(f)
	perInvocation(f, "failed", "shard")
	return cmd
}
