// Package pipeline holds the contracts every stage of capfilt shares: the Job on the work
// queue, ShardRef, ShardState and ShardResult, the RunSettings every worker of a run uses
// (typed: the spec package's Generation, AcceptRule and Queue), the NATS stream,
// per-run consumer, subject and KV bucket names, and starting an embedded nats-server. Queue's
// methods are every operation the coordinator and the workers need (publish jobs, fetch
// and settle a Delivery, run settings, shard states), so the NATS handles stay here. It
// imports neither coordinator nor workers; they import it, and the composition packages
// (cmd/capfilt, localrun) wire them together.
package pipeline
