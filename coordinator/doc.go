// Package coordinator lists and checks input shards, claims the output prefix for one
// run (claim.go), publishes one idempotent JetStream job per shard, tracks shard states in a JetStream KV bucket, handles retries and dead letters,
// and writes the run manifest. It knows nothing about tensors.
package coordinator
