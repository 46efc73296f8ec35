// Package workers runs the worker loop: pull a job, heartbeat while working, run the
// per-shard stage pipeline (read, decode, batch, caption, filter, write), publish the
// outputs, then ack, nak or terminate the job; it shuts down gracefully on SIGTERM.
package workers
