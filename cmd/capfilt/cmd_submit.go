package main

import (
	"github.com/spf13/cobra"

	"github.com/capfilt/capfilt/coordinator"
	"github.com/capfilt/capfilt/pipeline"
)

type submitCommand struct {
	run       runOptions
	nats      natsOptions
	store     storeOptions
	Wait      bool
	Overwrite bool

	rs pipeline.RunSettings
	qc pipeline.QueueConfig
}

func newSubmitCommand(a *app) *cobra.Command {
	c := &submitCommand{}
	cmd := &cobra.Command{
		Use:   "submit --input URLS --output URL --run NAME --model PATH [settings] [--wait]",
		Short: "Publish a run: one job per input shard on NATS JetStream, for workers to process",
		Long: `Expands the inputs into shards (checking each exists, and reading the first sample of each
input's first shard), claims the output prefix for the run (OUTPUT/_capfilt_run.json,
written create-only), records the run's settings (models, accept rule, generation settings,
seed, queue settings) in NATS so every worker uses the same ones, and publishes one job per
shard with message id <run>/<shard>. Submitting the same run again publishes nothing new;
other settings under the same run name are refused, and so is an output that another run
claimed or that holds files capfilt did not write, unless --overwrite.

--wait follows the run with a progress bar and ends with the manifest.`,
		Args: cobra.NoArgs,
		PreRunE: func(cmd *cobra.Command, _ []string) (err error) {
			c.rs, c.qc, err = c.run.resolve(a, c.run.Name)
			return err
		},
		RunE: func(cmd *cobra.Command, _ []string) error { return c.execute(a, cmd) },
	}
	f := cmd.Flags()
	c.run.AddFlags(f)
	c.nats.AddFlags(f)
	c.store.AddFlags(f)
	f.BoolVar(&c.Wait, "wait", false, "follow the run with a progress bar until it is complete, then print the manifest")
	perInvocation(f, "wait")
	addOverwriteFlag(f, &c.Overwrite)
	return cmd
}

func (c *submitCommand) execute(a *app, cmd *cobra.Command) error {
	rs := c.rs
	if err := c.run.check(&rs); err != nil {
		return err
	}
	nc, js, err := c.nats.connect(a, cmd)
	if err != nil {
		return err
	}
	defer nc.Close()
	q, err := pipeline.EnsureQueue(cmd.Context(), js, c.qc)
	if err != nil {
		return err
	}
	coord := coordinator.New(q, coordinator.Config{Store: c.store.open(), Log: a.log, Version: capfiltVersion()})
	var opts []coordinator.SubmitOption
	if c.Overwrite {
		opts = append(opts, coordinator.Overwrite())
	}
	sum, err := coord.Submit(cmd.Context(), rs, opts...)
	if err != nil {
		return asUsage(err)
	}
	run := rs.Run
	switch {
	case sum.Published == 0 && sum.Resubmit:
		a.printf("run %s was already submitted: %d shards, no new job published\n", run, len(sum.Shards))
	case sum.Resubmit:
		a.printf("run %s: %d shards, %d new jobs published (%d already queued or done)\n", run, len(sum.Shards), sum.Published, sum.Known)
	default:
		a.printf("run %s: %d shards, %d jobs published on %s\n", run, len(sum.Shards), sum.Published, pipeline.JobSubject(run))
	}
	a.printf("output: %s\n", rs.Output)
	if !c.Wait {
		a.printf("follow it with: capfilt status --run %s --watch\n", run)
		return nil
	}
	if _, err := a.follow(cmd.Context(), coord, run, len(sum.Shards)); err != nil {
		return err
	}
	return a.finishRun(cmd.Context(), coord, run, retryHint(run))
}
