// Package workers runs the worker loop: pull a job, heartbeat while working, run the
// per-shard stage pipeline (read, decode, batch, label, write), publish the outputs,
// then ack, nak with the run's backoff or terminate after the run's attempts; it shuts
// down gracefully on SIGTERM. The model stage comes in through the Labeler interface
// (package modelstage implements it), so this package knows no tensors and links no
// model code; it applies the run's spec.AcceptRule to the scores itself.
package workers
