// Package pipeline holds the contracts every stage of capfilt shares: Job, ShardRef,
// ShardResult, Config, run ids, the NATS subject, stream and KV names, and starting an
// embedded nats-server. It imports neither coordinator nor workers; they import it, and
// cmd/capfilt wires the three together.
package pipeline
