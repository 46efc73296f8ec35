package shards

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
)

// ShardOptions configure how input shards are read.
type ShardOptions struct {
	Columns ParquetColumns // Parquet only; empty names are detected
	Limits  Limits
	// HumanCaptions says the input captions were written by people (COCO-style
	// annotations), not scraped: samples carry them as SourceHuman instead of SourceWeb.
	HumanCaptions bool
}

// Input shard formats, as ShardFormat names them.
const (
	FormatTar     = "tar"     // WebDataset .tar, .tar.gz, .tgz
	FormatParquet = "parquet" // .parquet
)

// ShardFormat names the input format of a shard from its name: FormatTar for .tar,
// .tar.gz and .tgz, FormatParquet for .parquet, "" for anything else. (A tar is read
// gzip'd or not by its bytes; the name only routes it.)
func ShardFormat(u URL) string {
	switch name := strings.ToLower(u.Base()); {
	case strings.HasSuffix(name, ".tar"), strings.HasSuffix(name, ".tar.gz"), strings.HasSuffix(name, ".tgz"):
		return FormatTar
	case strings.HasSuffix(name, ".parquet"):
		return FormatParquet
	}
	return ""
}

// OpenShard opens an input shard for streaming, by its ShardFormat: a tar (gzip'd or not)
// is read front to back; .parquet needs random access, which on S3 is ranged GETs (see
// S3Store.OpenAt), so neither is ever copied whole to memory or disk. Closing the reader
// closes the object.
func OpenShard(ctx context.Context, store Store, u URL, opts ShardOptions) (SampleReader, error) {
	var r SampleReader
	var obj io.Closer
	switch ShardFormat(u) {
	case FormatTar:
		rc, err := store.Open(ctx, u)
		if err != nil {
			return nil, err
		}
		r, obj = OpenTar(rc, u.String(), opts.Limits), rc
	case FormatParquet:
		ra, err := store.OpenAt(ctx, u)
		if err != nil {
			return nil, err
		}
		if r, err = OpenParquet(ra, u.String(), opts); err != nil {
			ra.Close()
			return nil, err
		}
		obj = ra
	default:
		return nil, fmt.Errorf("shard %s: unsupported format (want .tar, .tar.gz, .tgz or .parquet)", u)
	}
	return &ownedReader{SampleReader: r, obj: obj, human: opts.HumanCaptions}, nil
}

// ownedReader closes the object a SampleReader reads from, and marks human captions.
type ownedReader struct {
	SampleReader
	obj   io.Closer
	human bool
}

func (o *ownedReader) Next() (Sample, error) {
	s, err := o.SampleReader.Next()
	if err == nil && o.human {
		s.CaptionSource = SourceHuman
	}
	return s, err
}

func (o *ownedReader) Close() error {
	return errors.Join(o.SampleReader.Close(), o.obj.Close())
}
