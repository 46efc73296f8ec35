package shards

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

// CleanedReadOptions choose what OpenCleaned reads.
type CleanedReadOptions struct {
	// SkipImages leaves the image column unread (Image stays nil): a pass over the
	// captions and scores then reads a small fraction of the file.
	SkipImages bool
}

// CleanedReader streams the rows of a cleaned Parquet back, one record batch at a time.
type CleanedReader struct {
	meta     CleanedMeta
	rows     int64
	hasImage bool
	hasRej   bool
	hasMeta  bool
	kept     []arrow.Field // columns beyond the cleaned ones: kept input columns

	cur  recordCursor
	cols cleanedColumns
}

type cleanedColumns struct {
	key, shard, url, captioner, filter, meta *array.String
	image                                    *array.Binary
	imageValid                               arrow.Array // the image struct, whose nulls are missing images
	width, height                            *array.Int32
	captions, rejected                       *array.List
	kept                                     []arrow.Array
}

// OpenCleaned opens a cleaned Parquet for streaming. name is used in errors only; closing
// the reader does not close r.
func OpenCleaned(r SizedReaderAt, name string, opts CleanedReadOptions) (_ *CleanedReader, err error) {
	defer recoverMalformed("cleaned parquet "+name, &err)
	props := parquet.NewReaderProperties(memory.DefaultAllocator)
	props.BufferedStreamEnabled = true
	props.BufferSize = parquetBufferSize
	pf, err := file.NewParquetReader(io.NewSectionReader(r, 0, r.Size()), file.WithReadProps(props))
	if err != nil {
		return nil, fmt.Errorf("cleaned parquet %s: %w", name, err)
	}
	fail := func(err error) (*CleanedReader, error) {
		pf.Close()
		return nil, fmt.Errorf("cleaned parquet %s: %w", name, err)
	}
	fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{BatchSize: batchRows(pf)}, memory.DefaultAllocator)
	if err != nil {
		return fail(err)
	}
	schema, err := fr.Schema()
	if err != nil {
		return fail(err)
	}
	if err := checkCleanedSchema(schema); err != nil {
		return fail(err)
	}
	cr := &CleanedReader{rows: pf.NumRows(), hasRej: schema.HasField("rejected"), hasMeta: schema.HasField("meta"),
		cur: recordCursor{label: "cleaned parquet " + name, pf: pf}}
	cr.hasImage = schema.HasField("image") && !opts.SkipImages
	cr.kept = keptFieldsOf(schema)
	if cr.meta, err = cleanedMetaFrom(schema.Metadata()); err != nil {
		return fail(err)
	}
	var leaves []int
	for i := range pf.MetaData().Schema.NumColumns() {
		if pf.MetaData().Schema.Column(i).ColumnPath()[0] == "image" && !cr.hasImage {
			continue
		}
		leaves = append(leaves, i)
	}
	if cr.cur.rr, err = fr.GetRecordReader(context.Background(), leaves, nil); err != nil {
		return fail(err)
	}
	return cr, nil
}

// checkCleanedSchema refuses a file that is not a cleaned capfilt Parquet, saying why.
// Schema 1 files (image plain binary, no meta column, fewer nullable fields) pass too.
func checkCleanedSchema(sc *arrow.Schema) error {
	want := CleanedSchema(CleanedOptions{WithRejected: sc.HasField("rejected"), OmitImages: !sc.HasField("image")})
	for _, f := range want.Fields() {
		idx := sc.FieldIndices(f.Name)
		if len(idx) == 0 && f.Name == "meta" {
			continue // schema 1
		}
		if len(idx) != 1 {
			return fmt.Errorf("not a cleaned capfilt Parquet: no %q column", f.Name)
		}
		got := sc.Field(idx[0]).Type
		if f.Name == "image" && got.ID() == arrow.BINARY {
			continue // schema 1
		}
		if !arrow.TypeEqual(nullableType(got), f.Type) {
			return fmt.Errorf("not a cleaned capfilt Parquet: column %q is %s, want %s", f.Name, got, f.Type)
		}
	}
	return nil
}

// nullableType is t with every nested field nullable, to compare the shapes of types
// whose nullability differs between schema versions.
func nullableType(t arrow.DataType) arrow.DataType {
	switch t := t.(type) {
	case *arrow.StructType:
		fields := t.Fields()
		for i := range fields {
			fields[i].Nullable, fields[i].Type = true, nullableType(fields[i].Type)
		}
		return arrow.StructOf(fields...)
	case *arrow.ListType:
		return arrow.ListOf(nullableType(t.Elem()))
	}
	return t
}

// keptFieldsOf are the columns of a cleaned file beyond the cleaned ones.
func keptFieldsOf(sc *arrow.Schema) []arrow.Field {
	known := CleanedSchema(CleanedOptions{WithRejected: true})
	var kept []arrow.Field
	for _, f := range sc.Fields() {
		if !known.HasField(f.Name) {
			kept = append(kept, f)
		}
	}
	return kept
}

func cleanedMetaFrom(md arrow.Metadata) (CleanedMeta, error) {
	get := func(k string) string {
		if i := md.FindKey(k); i >= 0 {
			return md.Values()[i]
		}
		return ""
	}
	m := CleanedMeta{Version: get(metaVersion), Build: get(metaBuild), RunID: get(metaRunID), Captioner: get(metaCaptioner), Filter: get(metaFilter)}
	if th := get(metaThresholds); th != "" {
		if err := json.Unmarshal([]byte(th), &m.Thresholds); err != nil {
			return m, fmt.Errorf("metadata %s: %w", metaThresholds, err)
		}
	}
	for i, k := range md.Keys() {
		switch k {
		case metaSchemaVersion, metaVersion, metaBuild, metaRunID, metaCaptioner, metaFilter, metaThresholds:
			continue
		}
		if extra, ok := strings.CutPrefix(k, metaPrefix); ok {
			if m.Extra == nil {
				m.Extra = map[string]string{}
			}
			m.Extra[extra] = md.Values()[i]
		}
	}
	return m, nil
}

// Meta is what the file says made it.
func (r *CleanedReader) Meta() CleanedMeta { return r.meta }

// NumRows is the number of rows in the file.
func (r *CleanedReader) NumRows() int64 { return r.rows }

// HasImages reports whether rows come with their image bytes.
func (r *CleanedReader) HasImages() bool { return r.hasImage }

// Next returns the next row, or io.EOF after the last.
func (r *CleanedReader) Next() (CleanedRow, error) {
	var row CleanedRow
	err := r.cur.next(r.bind, func(i int) { row = r.rowAt(i) })
	return row, err
}

func (r *CleanedReader) rowAt(i int) CleanedRow {
	c := r.cols
	row := CleanedRow{
		Key:         strings.Clone(c.key.Value(i)),
		SourceShard: strings.Clone(c.shard.Value(i)),
		Width:       int(c.width.Value(i)),
		Height:      int(c.height.Value(i)),
		Captions:    captionsAt(c.captions, i),
		Captioner:   strings.Clone(c.captioner.Value(i)),
		Filter:      strings.Clone(c.filter.Value(i)),
	}
	if c.url.IsValid(i) {
		row.URL = strings.Clone(c.url.Value(i))
	}
	if c.image != nil && c.image.IsValid(i) && (c.imageValid == nil || c.imageValid.IsValid(i)) {
		row.Image = bytes.Clone(c.image.Value(i))
	}
	if c.rejected != nil {
		row.Rejected = captionsAt(c.rejected, i)
	}
	if c.meta != nil && c.meta.IsValid(i) {
		row.Meta = []byte(c.meta.Value(i))
	}
	if len(r.kept) > 0 {
		row.Kept = keptAt(r.kept, c.kept, i)
	}
	return row
}

func (r *CleanedReader) bind(rec arrow.RecordBatch) (err error) {
	sc := rec.Schema()
	col := func(name string) arrow.Array {
		if idx := sc.FieldIndices(name); len(idx) == 1 {
			return rec.Column(idx[0])
		}
		return nil
	}
	var ok [11]bool
	r.cols = cleanedColumns{}
	r.cols.key, ok[0] = col("key").(*array.String)
	r.cols.shard, ok[1] = col("source_shard").(*array.String)
	r.cols.url, ok[2] = col("url").(*array.String)
	r.cols.width, ok[3] = col("width").(*array.Int32)
	r.cols.height, ok[4] = col("height").(*array.Int32)
	r.cols.captions, ok[5] = col("captions").(*array.List)
	r.cols.captioner, ok[6] = col("captioner").(*array.String)
	r.cols.filter, ok[7] = col("filter").(*array.String)
	ok[8], ok[9], ok[10] = true, true, true
	if r.hasImage {
		switch img := col("image").(type) {
		case *array.Binary: // schema 1
			r.cols.image = img
		case *array.Struct:
			r.cols.image, ok[8] = img.Field(0).(*array.Binary)
			r.cols.imageValid = img
		default:
			ok[8] = false
		}
	}
	if r.hasRej {
		r.cols.rejected, ok[9] = col("rejected").(*array.List)
	}
	if r.hasMeta {
		r.cols.meta, ok[10] = col("meta").(*array.String)
	}
	for _, f := range r.kept {
		c := col(f.Name)
		if c == nil {
			return fmt.Errorf("record batch lacks kept column %q", f.Name)
		}
		r.cols.kept = append(r.cols.kept, c)
	}
	for _, good := range ok {
		if !good {
			return errors.New("record batch does not match the cleaned schema")
		}
	}
	return nil
}

func captionsAt(l *array.List, i int) []Caption {
	start, end := l.ValueOffsets(i)
	if start == end {
		return nil
	}
	st := l.ListValues().(*array.Struct)
	text := st.Field(0).(*array.String)
	source := st.Field(1).(*array.String)
	itm := st.Field(2).(*array.Float32)
	itc := st.Field(3).(*array.Float32)
	out := make([]Caption, 0, end-start)
	for j := int(start); j < int(end); j++ {
		out = append(out, Caption{
			Text: strings.Clone(text.Value(j)), Source: strings.Clone(source.Value(j)),
			ITM: itm.Value(j), ITC: itc.Value(j),
		})
	}
	return out
}

// Close releases the reader.
func (r *CleanedReader) Close() error { return r.cur.close() }
