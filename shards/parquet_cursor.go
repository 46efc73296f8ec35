package shards

import (
	"errors"
	"fmt"
	"io"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

// recordCursor streams a Parquet file's rows record batch by record batch: what the
// input-shard reader and the cleaned-Parquet reader share. Its errors are sticky (after
// one, every call returns it) and a panic inside arrow-go on a malformed file becomes an
// error naming the file.
type recordCursor struct {
	label string // "parquet shard NAME", "cleaned parquet NAME": starts every error
	pf    *file.Reader
	rr    pqarrow.RecordReader
	rec   arrow.RecordBatch
	row   int   // next row in rec
	seen  int64 // rows before rec
	err   error
}

// next moves to the next row and hands its index in the current batch to take; bind
// runs on every new batch first (to look its columns up). It returns io.EOF after the last row.
func (c *recordCursor) next(bind func(arrow.RecordBatch) error, take func(i int)) (err error) {
	if c.err != nil {
		return c.err
	}
	defer func() {
		if err != nil {
			c.err = err
		}
	}()
	defer recoverMalformed(c.label, &err)
	for c.rec == nil || c.row >= int(c.rec.NumRows()) {
		if c.rec != nil {
			c.seen += c.rec.NumRows()
			c.rec.Release()
			c.rec = nil
		}
		rec, err := c.rr.Read()
		if errors.Is(err, io.EOF) || (err == nil && rec == nil) {
			return io.EOF
		}
		if err != nil {
			return fmt.Errorf("%s: read rows after row %d: %w", c.label, c.seen, err)
		}
		rec.Retain()
		c.rec, c.row = rec, 0
		if err := bind(rec); err != nil {
			return fmt.Errorf("%s: %w", c.label, err)
		}
	}
	c.row++
	take(c.row - 1)
	return nil
}

func (c *recordCursor) close() error {
	if c.rec != nil {
		c.rec.Release()
		c.rec = nil
	}
	c.rr.Release()
	return c.pf.Close()
}

// recoverMalformed turns a panic inside arrow-go (which some corrupt files cause) into an
// error naming the file.
func recoverMalformed(label string, err *error) {
	if p := recover(); p != nil {
		*err = fmt.Errorf("%s: malformed file: %v", label, p)
	}
}
