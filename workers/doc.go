// Package workers runs the worker loop: pull a job, heartbeat while working (paced by the
// run's ack wait), run the per-shard stage pipeline (read, decode, batch, label, write),
// publish the outputs, then ack, nak with the run's backoff or terminate after the run's
// attempts; it shuts down gracefully on SIGTERM. A failure is one of three kinds
// (failure.go): a shard that cannot be processed is dead at once; a store outage holds
// the job until the store answers and costs no attempt; the rest are retried. A shard
// damaged part-way is done with damage, with the samples before it. The model stage comes in through the Labeler interface
// (package modelstage implements it), so this package knows no tensors and links no
// model code; it applies the run's spec.AcceptRule to the scores itself.
package workers
