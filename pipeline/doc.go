// Package pipeline holds the contracts every stage of capfilt shares: the Job on the work
// queue, ShardRef, ShardState and ShardResult, the RunSettings every worker of a run
// uses, the NATS stream, consumer, subject and KV bucket names (Queue opens them all),
// and starting an embedded nats-server. It imports neither coordinator nor workers; they
// import it, and cmd/capfilt wires the three together.
package pipeline
