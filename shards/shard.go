package shards

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// ShardOptions configure how input shards are read.
type ShardOptions struct {
	Columns ParquetColumns // Parquet only; empty names are detected
	Limits  Limits
}

// OpenShard opens an input shard for streaming, by its extension: .tar (WebDataset) is
// read front to back; .parquet needs random access, which on S3 is ranged GETs (see
// S3Store.OpenAt), so neither is ever copied whole to memory or disk. Closing the reader
// closes the object.
func OpenShard(ctx context.Context, store Store, u URL, opts ShardOptions) (SampleReader, error) {
	switch u.Ext() {
	case ".tar":
		rc, err := store.Open(ctx, u)
		if err != nil {
			return nil, err
		}
		return &ownedReader{SampleReader: OpenTar(rc, u.String(), opts.Limits), obj: rc}, nil
	case ".parquet":
		ra, err := store.OpenAt(ctx, u)
		if err != nil {
			return nil, err
		}
		r, err := OpenParquet(ra, u.String(), opts.Columns, opts.Limits)
		if err != nil {
			ra.Close()
			return nil, err
		}
		return &ownedReader{SampleReader: r, obj: ra}, nil
	}
	return nil, fmt.Errorf("shard %s: unsupported format %q (want .tar or .parquet)", u, u.Ext())
}

// ownedReader closes the object a SampleReader reads from.
type ownedReader struct {
	SampleReader
	obj io.Closer
}

func (o *ownedReader) Close() error {
	return errors.Join(o.SampleReader.Close(), o.obj.Close())
}
