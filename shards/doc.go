// Package shards is the storage layer: URLs (s3://, file://, plain paths, brace ranges),
// streaming readers for WebDataset tar and Parquet input shards, the cleaned-Parquet
// writer and reader, and atomic publishing of outputs. It imports no other capfilt package.
//
// Storage. ParseURL is the one parser of locations; Expand turns a pattern with brace
// ranges ({00000..09999}) and globs (*.tar) into URLs. OpenStore routes each URL to a
// LocalStore or an S3Store by scheme. A Store writer publishes atomically: a local file is
// written beside its destination and renamed on Close; an S3 object is sent as one
// PutObject or a multipart upload that only Close completes, and Abort aborts. Missing
// buckets and objects and denied access come back as ErrBucketNotFound, ErrNotFound and
// ErrAccessDenied, wrapped with the URL.
//
// Input. OpenShard streams the Samples of a .tar or .parquet shard, one sample in memory
// at a time. Parquet is read from S3 with ranged GETs (S3Store.OpenAt), column chunks in
// 4 MiB reads, never spooled to disk. An unusable sample comes back with a SkipReason; a
// broken shard ends with an error that says where.
//
// Output. CleanedWriter writes the cleaned Parquet of DESIGN.md (zstd, row groups of about
// 128 MiB, capfilt's version, run id, models and thresholds in the key/value metadata);
// CleanedReader streams it back record batch by record batch. ShardStats is the per-shard
// account written as <stem>.stats.json.
package shards
