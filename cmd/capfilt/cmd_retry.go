package main

import (
	"github.com/spf13/cobra"

	"github.com/capfilt/capfilt/coordinator"
)

type retryCommand struct {
	nats   natsOptions
	store  storeOptions
	Run    string
	Failed bool
	Shards []string
	Wait   bool
}

func newRetryCommand(a *app) *cobra.Command {
	c := &retryCommand{}
	cmd := &cobra.Command{
		Use:   "retry --run NAME (--failed | --shard S ...) [--wait]",
		Short: "Re-enqueue a run's dead shards, or chosen done or dead shards",
		Long: `--failed re-enqueues every dead shard (its attempts ran out, or it could not be
processed: mend the input first); --shard names one by id, input URL or output stem
(repeatable), to redo a dead or done shard. Each gets a new job with a fresh set of
attempts, and its outputs are overwritten. The worker that settles the run's last job
rewrites _manifest.json; --wait follows the run until it is complete and writes the
manifest itself.`,
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
			coord := coordinator.New(q, coordinator.Config{Store: c.store.open(), Log: a.log, Version: capfiltVersion()})
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
			if !c.Wait {
				return nil
			}
			st, err := coord.Status(cmd.Context(), run)
			if err != nil {
				return asUsage(err)
			}
			if _, err := a.follow(cmd.Context(), coord, run, st.Shards); err != nil {
				return err
			}
			return a.finishRun(cmd.Context(), coord, run, retryHint(run))
		},
	}
	f := cmd.Flags()
	addRunNameFlag(f, &c.Run)
	f.BoolVar(&c.Failed, "failed", false, "re-enqueue every dead shard")
	f.StringArrayVar(&c.Shards, "shard", nil, "a shard to redo: its id, input URL or output stem (repeatable)")
	f.BoolVar(&c.Wait, "wait", false, "follow the run with a progress bar until it is complete, then print the manifest")
	c.nats.AddFlags(f)
	c.store.AddFlags(f)
	perInvocation(f, "failed", "shard", "wait")
	return cmd
}
