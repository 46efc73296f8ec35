// Package shards is the storage layer: URLs (s3://, file://, plain paths, brace ranges),
// streaming readers for WebDataset tar and Parquet input shards, the cleaned-Parquet
// writer and reader, and atomic publishing of outputs. It imports no other capfilt package.
package shards
