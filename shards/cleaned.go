package shards

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"runtime/debug"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

// Caption sources: where a caption came from. Web captions are the alt text of the input
// shards; human ones are input captions written by annotators (COCO-style datasets, by
// ShardOptions.HumanCaptions); synthetic ones the captioner wrote.
const (
	SourceWeb       = "web"
	SourceHuman     = "human"
	SourceSynthetic = "synthetic"
)

// CaptionSources is every caption source, in the order stats list them.
var CaptionSources = []string{SourceWeb, SourceHuman, SourceSynthetic}

// Caption is one caption of an image with the filter's scores for it: ITM is the
// image-text matching probability in [0,1], ITC the image-text cosine similarity in [-1,1].
type Caption struct {
	Text   string
	Source string // SourceWeb, SourceHuman or SourceSynthetic
	ITM    float32
	ITC    float32
}

// CleanedRow is one image that kept at least one caption.
type CleanedRow struct {
	Key         string
	SourceShard string // the input shard's URL
	URL         string // where the image came from; "" is stored as null
	Image       []byte // the original encoded bytes, not re-encoded; nil when images are omitted
	Width       int
	Height      int
	Captions    []Caption // the accepted captions, at least one
	Rejected    []Caption // the rejected captions; written only with CleanedOptions.WithRejected
	Captioner   string    // the captioner model id
	Filter      string    // the filter model id
	// Meta is the input sample's JSON (Sample.MetaJSON, img2dataset's KEY.json) byte for
	// byte; nil is stored as null.
	Meta []byte
	// Kept are input Parquet columns carried through typed (Sample.Kept). Every row of a
	// file keeps the same columns: the first row's.
	Kept KeptColumns
}

// CleanedMeta is stored in the file's key/value metadata, so every output file says what
// made it.
type CleanedMeta struct {
	Version    string             // capfilt's version
	Build      string             // the build (VCS revision); empty: the binary's own, or "unknown"
	RunID      string             // the run that wrote the file
	Captioner  string             // captioner model id
	Filter     string             // filter model id
	Thresholds map[string]float64 // the accept rule, e.g. {"itm": 0.5}
	Extra      map[string]string  // anything else, stored under "capfilt.<key>"
}

// Metadata keys of the cleaned Parquet.
const (
	metaPrefix        = "capfilt."
	metaSchemaVersion = metaPrefix + "schema_version"
	metaVersion       = metaPrefix + "version"
	metaBuild         = metaPrefix + "build"
	metaRunID         = metaPrefix + "run_id"
	metaCaptioner     = metaPrefix + "captioner"
	metaFilter        = metaPrefix + "filter"
	metaThresholds    = metaPrefix + "thresholds"
	// Schema 2: image is HF's Image struct {bytes, path}, a meta column, every column
	// nullable (as HF datasets makes them). Schema 1 files (image plain binary, no meta)
	// are still read.
	cleanedSchemaV = "2"
)

// CleanedOptions shape the cleaned file. The zero value writes images, no rejected
// captions, and row groups of about DefaultRowGroupBytes.
type CleanedOptions struct {
	// OmitImages leaves the image column out of the schema: a captions-only file for
	// inspection, which the trainer cannot train on.
	OmitImages bool
	// WithRejected adds a "rejected" column (the same list<struct> as "captions") holding
	// the captions the filter dropped, with their scores, for audit. It is a separate
	// column, present only when asked for, so that readers of accepted data pay nothing.
	WithRejected bool
	// RowGroupBytes starts a new row group after about this many bytes of row data.
	RowGroupBytes int64
	// ZstdLevel is the zstd level of every column but the image bytes (default 3). Those
	// are stored uncompressed: JPEG, PNG and WebP are entropy-coded already, and zstd
	// saves nothing on them for the CPU it costs.
	ZstdLevel int

	zstdImages bool // benchmarks only: compress the image bytes too, as schema 1 did
}

// DefaultRowGroupBytes makes row groups that a reader streams in a few dozen large reads
// and that a writer can buffer.
const DefaultRowGroupBytes = 128 << 20

const (
	cleanedBatchBytes = 8 << 20 // rows are handed to the Parquet encoder in batches of about this
	cleanedBatchRows  = 4096
)

// Every field is nullable because HF datasets only matches the features it stored against
// nullable fields; the writer leaves nothing null but url and meta.
var (
	captionStruct = arrow.StructOf(
		arrow.Field{Name: "text", Type: arrow.BinaryTypes.String, Nullable: true},
		arrow.Field{Name: "source", Type: arrow.BinaryTypes.String, Nullable: true},
		arrow.Field{Name: "itm", Type: arrow.PrimitiveTypes.Float32, Nullable: true},
		arrow.Field{Name: "itc", Type: arrow.PrimitiveTypes.Float32, Nullable: true},
	)
	captionList = arrow.ListOf(captionStruct)
	// imageStruct is HF datasets' Image feature as it lands in Parquet.
	imageStruct = arrow.StructOf(
		arrow.Field{Name: "bytes", Type: arrow.BinaryTypes.Binary, Nullable: true},
		arrow.Field{Name: "path", Type: arrow.BinaryTypes.String, Nullable: true},
	)
)

// CleanedSchema is the Arrow schema of the cleaned Parquet for the given options, before
// any kept input columns (which come last).
func CleanedSchema(opts CleanedOptions) *arrow.Schema {
	str := func(name string) arrow.Field {
		return arrow.Field{Name: name, Type: arrow.BinaryTypes.String, Nullable: true}
	}
	fields := []arrow.Field{str("key"), str("source_shard"), str("url")}
	if !opts.OmitImages {
		fields = append(fields, arrow.Field{Name: "image", Type: imageStruct, Nullable: true})
	}
	fields = append(fields,
		arrow.Field{Name: "width", Type: arrow.PrimitiveTypes.Int32, Nullable: true},
		arrow.Field{Name: "height", Type: arrow.PrimitiveTypes.Int32, Nullable: true},
		arrow.Field{Name: "captions", Type: captionList, Nullable: true},
		str("captioner"), str("filter"), str("meta"),
	)
	if opts.WithRejected {
		fields = append(fields, arrow.Field{Name: "rejected", Type: captionList, Nullable: true})
	}
	return arrow.NewSchema(fields, nil)
}

// CleanedWriter writes the cleaned Parquet of one shard, row group by row group: image
// bytes uncompressed, every other column zstd. It holds at most one row group's encoded
// pages in memory. The file is begun at the first row, whose kept columns fix the schema.
type CleanedWriter struct {
	opts    CleanedOptions
	w       io.Writer
	kv      arrow.Metadata
	props   *parquet.WriterProperties
	schema  *arrow.Schema // the cleaned columns
	kept    []arrow.Field // the kept input columns, from the first row
	fw      *pqarrow.FileWriter
	b       *array.RecordBuilder
	keptBuf []KeptColumns // the kept cells of the rows in the builder
	batchN  int           // rows in the builder
	batchB  int64         // their bytes
	groupB  int64         // bytes in the current row group
	rows    int64
	closed  bool
	lastErr error
}

// NewCleanedWriter starts a cleaned Parquet on w. Close finishes the file but does not
// close w: publishing it (ObjectWriter.Close) is the caller's decision.
func NewCleanedWriter(w io.Writer, meta CleanedMeta, opts CleanedOptions) (*CleanedWriter, error) {
	if opts.RowGroupBytes <= 0 {
		opts.RowGroupBytes = DefaultRowGroupBytes
	}
	if opts.ZstdLevel == 0 {
		opts.ZstdLevel = 3
	}
	schema := CleanedSchema(opts)
	md, err := meta.keyValues(schema)
	if err != nil {
		return nil, err
	}
	props := parquet.NewWriterProperties(
		parquet.WithCompression(compress.Codecs.Zstd),
		parquet.WithCompressionLevel(opts.ZstdLevel),
		parquet.WithCompressionFor("image.bytes", imageCodec(opts)),
		parquet.WithCreatedBy(meta.createdBy()),
		// Image bytes are unique: a dictionary only wastes time, and min/max statistics
		// would copy whole images into every page header.
		parquet.WithDictionaryFor("image.bytes", false),
		parquet.WithStatsFor("image.bytes", false),
		parquet.WithDictionaryFor("image.path", false),
		parquet.WithDictionaryFor("key", false),
		parquet.WithDictionaryFor("url", false),
		parquet.WithDictionaryFor("meta", false),
		parquet.WithStatsFor("meta", false),
		parquet.WithMaxRowGroupLength(1<<40), // row groups are cut by bytes, below
	)
	return &CleanedWriter{opts: opts, w: w, kv: md, props: props, schema: schema,
		b: array.NewRecordBuilder(memory.DefaultAllocator, schema)}, nil
}

func imageCodec(opts CleanedOptions) compress.Compression {
	if opts.zstdImages {
		return compress.Codecs.Zstd
	}
	return compress.Codecs.Uncompressed
}

// begin starts the file with the cleaned columns and the kept ones.
func (w *CleanedWriter) begin(kept []arrow.Field) error {
	w.kept = kept
	fields := append(slices.Clone(w.schema.Fields()), kept...)
	full := arrow.NewSchema(fields, &w.kv)
	fw, err := pqarrow.NewFileWriter(full, noCloseWriter{w.w}, w.props, pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema()))
	if err != nil {
		return fmt.Errorf("cleaned parquet: %w", err)
	}
	w.fw = fw
	return nil
}

// noCloseWriter hides Close from the Parquet writer, which would otherwise close (and so
// publish) the object it writes to.
type noCloseWriter struct{ w io.Writer }

func (n noCloseWriter) Write(p []byte) (int, error) { return n.w.Write(p) }

// createdBy is the writer's name in the form parquet-mr parses ("NAME version X (build
// Y)"); Spark ignores the string statistics of files whose created_by it cannot parse.
func (m CleanedMeta) createdBy() string {
	clean := func(s string) string {
		s = strings.Map(func(r rune) rune {
			if r == '(' || r == ')' || unicode.IsSpace(r) {
				return '-'
			}
			return r
		}, s)
		return cmp.Or(s, "unknown")
	}
	return fmt.Sprintf("capfilt version %s (build %s)", clean(m.Version), clean(m.build()))
}

func (m CleanedMeta) build() string {
	if m.Build != "" {
		return m.Build
	}
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" {
				return s.Value[:min(12, len(s.Value))]
			}
		}
	}
	return "unknown"
}

func (m CleanedMeta) keyValues(schema *arrow.Schema) (arrow.Metadata, error) {
	keys := []string{metaSchemaVersion, metaVersion, metaBuild, metaRunID, metaCaptioner, metaFilter, hfMetadataKey}
	vals := []string{cleanedSchemaV, m.Version, m.build(), m.RunID, m.Captioner, m.Filter, hfFeatures(schema)}
	if m.Thresholds != nil {
		th, err := json.Marshal(m.Thresholds)
		if err != nil {
			return arrow.Metadata{}, fmt.Errorf("cleaned parquet metadata: thresholds: %w", err)
		}
		keys, vals = append(keys, metaThresholds), append(vals, string(th))
	}
	for _, k := range slices.Sorted(maps.Keys(m.Extra)) {
		if slices.Contains(keys, metaPrefix+k) {
			return arrow.Metadata{}, fmt.Errorf("cleaned parquet metadata: extra key %q clashes with a fixed one", k)
		}
		keys, vals = append(keys, metaPrefix+k), append(vals, m.Extra[k])
	}
	return arrow.NewMetadata(keys, vals), nil
}

// Write adds one row. A row that breaks the schema's rules is refused with an error
// naming its key, and the file stays valid.
func (w *CleanedWriter) Write(row CleanedRow) error {
	if w.closed {
		return errors.New("cleaned parquet: write after close")
	}
	if w.lastErr != nil {
		return w.lastErr
	}
	if err := checkCleanedRow(row, w.opts); err != nil {
		return err
	}
	if w.fw == nil {
		if w.lastErr = w.begin(row.Kept.fields); w.lastErr != nil {
			return w.lastErr
		}
	}
	if !row.Kept.sameFields(w.kept) {
		return fmt.Errorf("cleaned row %q: keeps columns %v, but the file keeps %v", row.Key, row.Kept.Names(), KeptColumns{fields: w.kept}.Names())
	}
	size := w.appendRow(row)
	w.batchN++
	w.batchB += size
	w.groupB += size
	w.rows++
	if w.batchB >= cleanedBatchBytes || w.batchN >= cleanedBatchRows || w.groupB >= w.opts.RowGroupBytes {
		return w.flush()
	}
	return nil
}

// checkCleanedRow refuses a row that breaks the output's rules, naming its key: what
// both output formats write must hold.
func checkCleanedRow(row CleanedRow, opts CleanedOptions) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("cleaned row %q: %s", row.Key, fmt.Sprintf(format, args...))
	}
	if row.Key == "" {
		return errors.New("cleaned row: empty key")
	}
	for _, f := range [...]struct{ name, value string }{
		{"key", row.Key}, {"source_shard", row.SourceShard}, {"url", row.URL}, {"captioner", row.Captioner}, {"filter", row.Filter},
	} {
		if !utf8.ValidString(f.value) {
			return bad("%s is not UTF-8", f.name)
		}
	}
	if len(row.Captions) == 0 {
		return bad("no accepted caption; images whose captions were all rejected are not written")
	}
	if !opts.OmitImages && len(row.Image) == 0 {
		return bad("no image bytes")
	}
	if row.Width < 0 || row.Height < 0 || row.Width > 1<<31-1 || row.Height > 1<<31-1 {
		return bad("size %dx%d out of range", row.Width, row.Height)
	}
	if row.Meta != nil && (!utf8.Valid(row.Meta) || !json.Valid(row.Meta)) {
		return bad("meta is not UTF-8 JSON")
	}
	for _, c := range slices.Concat(row.Captions, row.Rejected) {
		if !slices.Contains(CaptionSources, c.Source) {
			return bad("caption source %q, want one of %v", c.Source, CaptionSources)
		}
		if !utf8.ValidString(c.Text) {
			return bad("caption %q is not UTF-8", c.Text)
		}
	}
	return nil
}

// appendRow adds row to the builders and returns about how many bytes it holds.
func (w *CleanedWriter) appendRow(row CleanedRow) int64 {
	f := 0
	next := func() array.Builder { b := w.b.Field(f); f++; return b }
	next().(*array.StringBuilder).Append(row.Key)
	next().(*array.StringBuilder).Append(row.SourceShard)
	if ub := next().(*array.StringBuilder); row.URL == "" {
		ub.AppendNull()
	} else {
		ub.Append(row.URL)
	}
	if !w.opts.OmitImages {
		ib := next().(*array.StructBuilder)
		ib.Append(true)
		ib.FieldBuilder(0).(*array.BinaryBuilder).Append(row.Image)
		ib.FieldBuilder(1).(*array.StringBuilder).Append(imagePath(row.Key, row.Image))
	}
	next().(*array.Int32Builder).Append(int32(row.Width))
	next().(*array.Int32Builder).Append(int32(row.Height))
	size := int64(len(row.Key)+len(row.SourceShard)+len(row.URL)+len(row.Image)+len(row.Captioner)+len(row.Filter)+len(row.Meta)) + 8
	size += appendCaptions(next().(*array.ListBuilder), row.Captions)
	next().(*array.StringBuilder).Append(row.Captioner)
	next().(*array.StringBuilder).Append(row.Filter)
	if mb := next().(*array.StringBuilder); row.Meta == nil {
		mb.AppendNull()
	} else {
		mb.BinaryBuilder.Append(row.Meta)
	}
	if w.opts.WithRejected {
		size += appendCaptions(next().(*array.ListBuilder), row.Rejected)
	}
	if len(w.kept) > 0 {
		w.keptBuf = append(w.keptBuf, row.Kept)
		size += int64(16 * len(w.kept))
	}
	return size
}

// imagePath is the image's file name for HF's Image.path: the key and the extension its
// bytes say (the key alone when they say none).
func imagePath(key string, image []byte) string {
	if ext := sniffImageExt(image); ext != "" {
		return key + "." + ext
	}
	return key
}

func appendCaptions(lb *array.ListBuilder, captions []Caption) int64 {
	lb.Append(true)
	sb := lb.ValueBuilder().(*array.StructBuilder)
	var size int64
	for _, c := range captions {
		sb.Append(true)
		sb.FieldBuilder(0).(*array.StringBuilder).Append(c.Text)
		sb.FieldBuilder(1).(*array.StringBuilder).Append(c.Source)
		sb.FieldBuilder(2).(*array.Float32Builder).Append(c.ITM)
		sb.FieldBuilder(3).(*array.Float32Builder).Append(c.ITC)
		size += int64(len(c.Text)+len(c.Source)) + 8
	}
	return size
}

// flush hands the buffered rows to the encoder and cuts the row group when it is full.
func (w *CleanedWriter) flush() error {
	if w.batchN == 0 {
		return nil
	}
	base := w.b.NewRecordBatch()
	defer base.Release()
	rec := base
	if len(w.kept) > 0 {
		kept, err := keptColumnBatch(w.kept, w.keptBuf)
		if err != nil {
			w.lastErr = fmt.Errorf("cleaned parquet: %w", err)
			return w.lastErr
		}
		cols := append(slices.Clone(base.Columns()), kept...)
		rec = array.NewRecordBatch(arrow.NewSchema(append(slices.Clone(w.schema.Fields()), w.kept...), nil), cols, base.NumRows())
		defer rec.Release()
		w.keptBuf = w.keptBuf[:0]
	}
	w.batchN, w.batchB = 0, 0
	if err := w.fw.WriteBuffered(rec); err != nil {
		w.lastErr = fmt.Errorf("cleaned parquet: encode rows: %w", err)
		return w.lastErr
	}
	if w.groupB >= w.opts.RowGroupBytes {
		w.groupB = 0
		if err := w.fw.NewBufferedRowGroupChecked(); err != nil {
			w.lastErr = fmt.Errorf("cleaned parquet: write row group: %w", err)
			return w.lastErr
		}
	}
	return nil
}

// Rows is how many rows were written.
func (w *CleanedWriter) Rows() int64 { return w.rows }

// Close writes the last rows and the footer.
func (w *CleanedWriter) Close() error {
	if w.closed {
		return nil
	}
	w.closed = true
	defer w.b.Release()
	err := w.lastErr
	if err == nil && w.fw == nil {
		err = w.begin(nil) // no row: a file with the cleaned columns only
	}
	if w.fw == nil {
		return err
	}
	if err == nil {
		err = w.flush()
	}
	if cerr := w.fw.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("cleaned parquet: finish file: %w", cerr)
	}
	return err
}
