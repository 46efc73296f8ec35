// Package shards is the storage layer: URLs (s3://, file://, plain paths, brace ranges),
// streaming readers for WebDataset tar and Parquet input shards, the cleaned-Parquet and
// WebDataset writers and the cleaned-Parquet reader, and atomic publishing of outputs. It
// imports no other capfilt package.
//
// Storage. ParseURL is the one parser of locations; Expand turns a pattern with brace
// ranges ({00000..09999}) and globs (*.tar) into URLs. OpenStore routes each URL to a
// LocalStore or an S3Store by scheme. A Store writer publishes atomically: a local file is
// written beside its destination and renamed on Close; an S3 object is sent as one
// PutObject or a multipart upload that only Close completes, and Abort aborts. Missing
// buckets and objects and denied access come back as ErrBucketNotFound, ErrNotFound and
// ErrAccessDenied, wrapped with the URL; a streaming read the store could not finish (an
// S3 body cut for good) wraps ErrInterrupted.
//
// Input. OpenShard streams the Samples of a shard, one sample in memory at a time, by its
// ShardFormat: .tar, .tar.gz and .tgz are WebDataset tars (gzip is recognised by its
// magic bytes, whatever the name; a zero-byte tar is an empty shard); .parquet is read
// from S3 with ranged GETs (S3Store.OpenAt), column chunks in 4 MiB reads, never spooled
// to disk. An unusable sample comes back with a SkipReason (a key repeated after another
// key is SkipDuplicateKey). A shard ends in one of three ways: io.EOF; a *DamageError
// after every sample read before the damage, saying where (ShardDamage.TruncatedAt, the
// member) and why (DamageTruncated, DamageBadHeader, DamageBadGzip) — the shard is done
// with damage, and ShardStats.RecordDamage keeps that in its stats; or another error,
// when the shard is not a tar, a Parquet file cannot be opened, or a read failed at the
// store (then the error wraps the store's, never reported as damage).
//
// Input columns. A Parquet shard's columns are detected (ParquetColumns): the image
// (binary, or HF's {bytes, path} struct), the caption (a string, or a list<string> of
// which every entry is a caption: Sample.Captions), the URL and the key ("key", "id",
// "uid", "image_id"; without one, "<shard stem>/<row number>", so keyless files of one
// run never share keys). ParquetColumns.Keep carries other input columns into the output
// with their types (["*"]: all the output does not hold already). A tar sample's KEY.json
// comes byte for byte as Sample.MetaJSON. ShardOptions.HumanCaptions marks the input
// captions SourceHuman instead of SourceWeb.
//
// Output. CleanedWriter writes the cleaned Parquet of DESIGN.md, schema 2: key,
// source_shard, url, image (HF datasets' Image struct {bytes, path}, with HF's features
// JSON under the "huggingface" key/value metadata, so datasets.load_dataset yields PIL
// images), width, height, captions (list of {text, source, itm, itc}), captioner,
// filter, meta (the source JSON text), rejected (by option), then the kept input columns.
// Every column is nullable, as HF requires to use its features. Image bytes are stored
// uncompressed (they are JPEG/PNG/WebP already), every other column zstd; row groups of
// about 128 MiB; created_by is "capfilt version X (build Y)", the form parquet-mr parses,
// and capfilt's version, build, run id, models and thresholds are in the key/value
// metadata. CleanedReader streams it back record batch by record batch, and reads
// schema 1 files (image plain binary) too. WDSWriter writes the same rows as a WebDataset
// tar (OutputWDS: KEY.jpg|png|webp, KEY.txt, KEY.json). ShardStats is the per-shard
// account written as <stem>.stats.json.
package shards
