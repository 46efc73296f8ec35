package main

import (
	"github.com/spf13/cobra"

	"github.com/capfilt/capfilt/coordinator"
	"github.com/capfilt/capfilt/pipeline"
)

func newSubmitCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "submit --input URLS --output URL --run NAME --model PATH [settings] [--wait]",
		Short: "Publish a run: one job per input shard on NATS JetStream, for workers to process",
		Long: `Expands the inputs into shards (checking each exists), records the run's settings (models,
accept rule, generation settings, seed) in NATS so every worker uses the same ones, and
publishes one job per shard with message id <run>/<shard>. Submitting the same run again
publishes nothing new; other settings under the same run name are refused.

--wait follows the run with a progress bar and ends with the manifest.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			run := a.v.GetString("run")
			if run == "" {
				return usagef("no run name given (--run)")
			}
			rs, err := a.runSettings(run)
			if err != nil {
				return err
			}
			qc, err := a.queueConfig()
			if err != nil {
				return err
			}
			nc, js, err := a.connectNATS(cmd)
			if err != nil {
				return err
			}
			defer nc.Close()
			q, err := pipeline.EnsureQueue(cmd.Context(), js, qc)
			if err != nil {
				return err
			}
			coord := coordinator.New(q, coordinator.Config{Store: a.store(), Log: a.log, Version: capfiltVersion()})
			sum, err := coord.Submit(cmd.Context(), rs)
			if err != nil {
				return asUsage(err)
			}
			switch {
			case sum.Published == 0 && sum.Resubmit:
				a.printf("run %s was already submitted: %d shards, no new job published\n", run, len(sum.Shards))
			case sum.Resubmit:
				a.printf("run %s: %d shards, %d new jobs published (%d already queued or done)\n", run, len(sum.Shards), sum.Published, sum.Known)
			default:
				a.printf("run %s: %d shards, %d jobs published on %s\n", run, len(sum.Shards), sum.Published, pipeline.JobSubject(run))
			}
			a.printf("output: %s\n", rs.Output)
			if !a.v.GetBool("wait") {
				a.printf("follow it with: capfilt status --run %s --watch\n", run)
				return nil
			}
			if _, err := a.follow(cmd.Context(), coord, run, len(sum.Shards)); err != nil {
				return err
			}
			return a.finishRun(cmd.Context(), coord, run, rs.Output)
		},
	}
	f := cmd.Flags()
	f.String("run", "", "run name: letters, digits, '-' and '_' (names the jobs, states and outputs' metadata)")
	f.String("model", "", "model for both captioner and filter: an HF directory, a .safetensors file or an original .pth")
	f.String("tokenizer", "", "vocab.txt or tokenizer.json (default: the one in the model's directory)")
	f.Bool("wait", false, "follow the run with a progress bar until it is complete, then print the manifest")
	addRunFlags(cmd)
	addNATSFlags(cmd)
	addStoreFlags(cmd)
	return cmd
}
