package shards

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

// ParquetColumns names the columns of an input Parquet shard. Empty names are detected
// from the schema: img2dataset's layout (a "jpg", "png", "webp" or "image" bytes column,
// "caption", "url", "key") and HF datasets' (an "image" struct {bytes, path}, "text" or
// "caption", an "id") need no flags. They are what --image-column / --caption-column set.
//
// Keys. The key column is Key, else the first of "key", "id", "uid", "image_id" present
// (a string or integer column). Without one, a row's key is the shard's stem and the
// row's number in the file, "train-00001/000000042", so that keyless files of one run
// never give two images one key.
//
// Captions. The caption column is a string column (or binary holding UTF-8), or a list
// of them (COCO-style "sentences"): every entry of the list is a caption of the image.
type ParquetColumns struct {
	Image   string `json:"image,omitempty"`   // a binary column, or a struct with a binary "bytes" field
	Caption string `json:"caption,omitempty"` // a string column, or a list<string> column
	URL     string `json:"url,omitempty"`     // optional
	Key     string `json:"key,omitempty"`     // optional; see Keys above
	// Keep names input columns to carry into the cleaned output with their types
	// (Sample.Kept, CleanedRow.Kept): LAION's similarity, punsafe, pwatermark, ... ["*"]
	// keeps every column the output does not already hold (all but the image, caption,
	// URL and key columns and names equal, ignoring case, to a cleaned column). A name
	// that is missing or clashes with a cleaned column is an error.
	Keep []string `json:"keep,omitempty"`
}

var (
	imageColumnNames   = []string{"jpg", "jpeg", "png", "webp", "image", "img"}
	captionColumnNames = []string{"caption", "text", "txt"}
	keyColumnNames     = []string{"key", "id", "uid", "image_id"}
)

const (
	// parquetBufferSize is how much one buffered read of a column chunk asks for: on S3
	// each is a ranged GET, so it must be large; on disk it is simply memory.
	parquetBufferSize = 4 << 20
	// parquetBatchBytes sizes record batches: about this many bytes of rows at a time.
	parquetBatchBytes = 8 << 20
	maxParquetBatch   = 1024
)

// OpenParquet streams the samples of an input Parquet shard record batch by record batch,
// reading only the columns it needs; a row group is never read whole. name is the
// shard's URL: errors name it, and keyless rows are keyed by its stem. Closing the reader
// does not close r.
func OpenParquet(r SizedReaderAt, name string, opts ShardOptions) (_ SampleReader, err error) {
	defer recoverMalformed("parquet shard "+name, &err)
	lim, cols := opts.Limits.withDefaults(), opts.Columns
	props := parquet.NewReaderProperties(memory.DefaultAllocator)
	props.BufferedStreamEnabled = true
	props.BufferSize = parquetBufferSize
	// A page holds at least one cell, so it may be somewhat larger than the largest image
	// allowed (writers cut pages at about 1 MiB, after the value that crosses it); a header
	// claiming more is a corrupt file, not a reason to allocate gigabytes.
	props.MaxUncompressedPageSize = 2*lim.MaxMemberBytes + 1<<20
	pf, err := file.NewParquetReader(io.NewSectionReader(r, 0, r.Size()), file.WithReadProps(props))
	if err != nil {
		return nil, fmt.Errorf("parquet shard %s: %w", name, err)
	}
	fail := func(err error) (SampleReader, error) {
		pf.Close()
		return nil, fmt.Errorf("parquet shard %s: %w", name, err)
	}
	fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{BatchSize: batchRows(pf)}, memory.DefaultAllocator)
	if err != nil {
		return fail(err)
	}
	schema, err := fr.Schema()
	if err != nil {
		return fail(err)
	}
	plan, err := planColumns(schema, cols)
	if err != nil {
		return fail(err)
	}
	var leaves []int
	imageLeaf := plan.image
	if plan.imageField != "" {
		imageLeaf += "." + plan.imageField
	}
	if idx := pf.MetaData().Schema.ColumnIndexByName(imageLeaf); idx >= 0 {
		leaves = append(leaves, idx)
	} else {
		return fail(fmt.Errorf("column %q: not a readable leaf column", imageLeaf))
	}
	for _, name := range plan.columns() {
		// A column of a nested type (a caption list, a kept struct) is read with every
		// leaf under it.
		for i := range pf.MetaData().Schema.NumColumns() {
			if pf.MetaData().Schema.Column(i).ColumnPath()[0] == name && !slices.Contains(leaves, i) {
				leaves = append(leaves, i)
			}
		}
	}
	rr, err := fr.GetRecordReader(context.Background(), leaves, nil)
	if err != nil {
		return fail(err)
	}
	return &parquetReader{name: name, stem: shardStem(name), lim: lim, plan: plan, seen: map[string]bool{},
		cur: recordCursor{label: "parquet shard " + name, pf: pf, rr: rr}}, nil
}

// shardStem is the stem of a shard named by its URL, or the name itself.
func shardStem(name string) string {
	if u, err := ParseURL(name); err == nil && u.Stem() != "" {
		return u.Stem()
	}
	return name
}

// batchRows picks the record batch length so that one batch holds about
// parquetBatchBytes, judged by the widest row group.
func batchRows(pf *file.Reader) int64 {
	widest := int64(1)
	for i := range pf.NumRowGroups() {
		rg := pf.MetaData().RowGroup(i)
		if rows := rg.NumRows(); rows > 0 {
			widest = max(widest, rg.TotalByteSize()/rows)
		}
	}
	return min(max(parquetBatchBytes/widest, 1), maxParquetBatch)
}

// columnPlan is where each part of a sample comes from.
type columnPlan struct {
	image, imageField string // imageField is "bytes" when image is a struct
	caption, url, key string
	width, height     string
	imageExtFromName  string
	captionList       bool          // the caption column is a list of strings
	kept              []arrow.Field // the columns carried through typed
}

// columns are the top-level columns read besides the image.
func (p columnPlan) columns() []string {
	names := []string{p.caption}
	for _, c := range []string{p.url, p.key, p.width, p.height} {
		if c != "" {
			names = append(names, c)
		}
	}
	for _, f := range p.kept {
		names = append(names, f.Name)
	}
	return names
}

func planColumns(sc *arrow.Schema, cols ParquetColumns) (columnPlan, error) {
	var plan columnPlan
	field := func(name string) (arrow.Field, bool) {
		idx := sc.FieldIndices(name)
		if len(idx) != 1 {
			return arrow.Field{}, false
		}
		return sc.Field(idx[0]), true
	}
	names := fieldNames(sc)
	pick := func(role, explicit string, candidates []string, required bool) (string, error) {
		if explicit != "" {
			if _, ok := field(explicit); !ok {
				return "", fmt.Errorf("%s column %q not found; the columns are %s", role, explicit, strings.Join(names, ", "))
			}
			return explicit, nil
		}
		for _, c := range candidates {
			if _, ok := field(c); ok {
				return c, nil
			}
		}
		if required {
			return "", fmt.Errorf("no %s column found among %s; name it with --%s-column", role, strings.Join(names, ", "), role)
		}
		return "", nil
	}
	var err error
	if plan.image, err = pick("image", cols.Image, imageColumnNames, true); err != nil {
		return plan, err
	}
	imgField, _ := field(plan.image)
	switch t := imgField.Type.(type) {
	case *arrow.BinaryType, *arrow.LargeBinaryType:
	case *arrow.StructType:
		bf, ok := t.FieldByName("bytes")
		if !ok || !isBinaryType(bf.Type) {
			return plan, fmt.Errorf("image column %q is a struct without a binary \"bytes\" field", plan.image)
		}
		plan.imageField = "bytes"
	default:
		return plan, fmt.Errorf("image column %q has type %s, want binary or struct {bytes, path}", plan.image, imgField.Type)
	}
	if slices.Contains([]string{"jpg", "jpeg", "png", "webp"}, plan.image) {
		plan.imageExtFromName = strings.Replace(plan.image, "jpeg", "jpg", 1)
	}
	if plan.caption, err = pick("caption", cols.Caption, captionColumnNames, true); err != nil {
		return plan, err
	}
	switch f, _ := field(plan.caption); {
	case isStringType(f.Type) || isBinaryType(f.Type):
	case isListType(f.Type) && (isStringType(listElem(f.Type)) || isBinaryType(listElem(f.Type))):
		plan.captionList = true
	default:
		return plan, fmt.Errorf("caption column %q has type %s, want string or list<string>", plan.caption, f.Type)
	}
	if plan.url, err = pick("url", cols.URL, []string{"url"}, false); err != nil {
		return plan, err
	}
	if plan.key, err = pick("key", cols.Key, keyColumnNames, false); err != nil {
		return plan, err
	}
	for _, c := range []*string{&plan.url, &plan.key} {
		if f, ok := field(*c); ok && !isStringType(f.Type) && !isIntegerType(f.Type) {
			*c = "" // an optional column of an unexpected type is ignored, not fatal
		}
	}
	if f, ok := field("width"); ok && isIntegerType(f.Type) {
		plan.width = "width"
	}
	if f, ok := field("height"); ok && isIntegerType(f.Type) {
		plan.height = "height"
	}
	if plan.kept, err = planKept(sc, cols.Keep, []string{plan.image, plan.caption, plan.url, plan.key}); err != nil {
		return plan, err
	}
	return plan, nil
}

func isListType(t arrow.DataType) bool {
	return t.ID() == arrow.LIST || t.ID() == arrow.LARGE_LIST
}

func listElem(t arrow.DataType) arrow.DataType {
	if l, ok := t.(arrow.ListLikeType); ok {
		return l.Elem()
	}
	return arrow.Null
}

func isBinaryType(t arrow.DataType) bool {
	return t.ID() == arrow.BINARY || t.ID() == arrow.LARGE_BINARY
}

func isStringType(t arrow.DataType) bool {
	if d, ok := t.(*arrow.DictionaryType); ok {
		t = d.ValueType
	}
	return t.ID() == arrow.STRING || t.ID() == arrow.LARGE_STRING
}

func isIntegerType(t arrow.DataType) bool { return arrow.IsInteger(t.ID()) }

type parquetReader struct {
	name string
	stem string // keys keyless rows
	lim  Limits
	plan columnPlan
	cur  recordCursor
	cols parquetRecordColumns
	seen map[string]bool // the keys read so far
}

type parquetRecordColumns struct {
	image, caption, url, key, width, height arrow.Array
	kept                                    []arrow.Array
}

func (r *parquetReader) Next() (Sample, error) {
	var s Sample
	err := r.cur.next(r.bindColumns, func(i int) { s = r.sample(i, r.cur.seen+int64(i)) })
	return s, err
}

func (r *parquetReader) bindColumns(rec arrow.RecordBatch) error {
	col := func(name string) arrow.Array {
		if name == "" {
			return nil
		}
		idx := rec.Schema().FieldIndices(name)
		if len(idx) != 1 {
			return nil
		}
		return rec.Column(idx[0])
	}
	r.cols = parquetRecordColumns{
		image: col(r.plan.image), caption: col(r.plan.caption), url: col(r.plan.url),
		key: col(r.plan.key), width: col(r.plan.width), height: col(r.plan.height),
	}
	if st, ok := r.cols.image.(*array.Struct); ok {
		idx, ok := st.DataType().(*arrow.StructType).FieldIdx(r.plan.imageField)
		if !ok {
			return fmt.Errorf("image column %q lost its %q field", r.plan.image, r.plan.imageField)
		}
		r.cols.image = st.Field(idx)
		if st.NullN() > 0 {
			// A null struct is a missing image even if its child slot holds something.
			r.cols.image = maskedArray{Array: r.cols.image, mask: st}
		}
	}
	if r.cols.image == nil || r.cols.caption == nil {
		return errors.New("image or caption column missing from the rows read")
	}
	for _, f := range r.plan.kept {
		c := col(f.Name)
		if c == nil || !arrow.TypeEqual(c.DataType(), f.Type) {
			return fmt.Errorf("kept column %q missing from the rows read", f.Name)
		}
		r.cols.kept = append(r.cols.kept, c)
	}
	return nil
}

// maskedArray reports a row null when either it or its parent struct is null.
type maskedArray struct {
	arrow.Array
	mask arrow.Array
}

func (m maskedArray) IsNull(i int) bool { return m.mask.IsNull(i) || m.Array.IsNull(i) }

func (r *parquetReader) sample(i int, rowNumber int64) Sample {
	s := Sample{Key: fmt.Sprintf("%s/%09d", r.stem, rowNumber), CaptionSource: SourceWeb}
	if k, ok := cellString(r.cols.key, i); ok && k != "" {
		s.Key = k
	}
	s.Kept = keptAt(r.plan.kept, r.cols.kept, i)
	duplicate := r.seen[s.Key]
	r.seen[s.Key] = true
	s.URL, _ = cellString(r.cols.url, i)
	if w, ok := cellInt(r.cols.width, i); ok && w >= 0 && w < 1<<31 {
		s.Width = int(w)
	}
	if h, ok := cellInt(r.cols.height, i); ok && h >= 0 && h < 1<<31 {
		s.Height = int(h)
	}
	img, hasImage := cellBytes(r.cols.image, i)
	cells, hasCaption := r.captionCells(i)
	switch {
	case duplicate:
		s.SkipReason = SkipDuplicateKey
	case !safeName(s.Key):
		s.SkipReason = SkipUnsafePath
	case !hasImage || len(img) == 0:
		s.SkipReason = SkipMissingImage
	case int64(len(img)) > r.lim.MaxMemberBytes:
		s.SkipReason = SkipMemberTooLarge
	case !hasCaption:
		s.SkipReason = SkipMissingCaption
	}
	if s.SkipReason != "" {
		return s
	}
	// The cell lives in the record batch's buffers, released with the batch.
	s.Image = bytes.Clone(img)
	if s.ImageExt = sniffImageExt(img); s.ImageExt == "" {
		s.ImageExt = r.plan.imageExtFromName
	}
	firstSkip := ""
	for _, cell := range cells {
		var caption, skip string
		var truncated bool
		switch {
		case !cell.ok:
			skip = SkipMissingCaption
		case len(s.Captions) >= r.lim.MaxCaptions:
			skip = SkipTooManyCaptions
		default:
			caption, truncated, skip = cleanCaption(cell.raw[:min(len(cell.raw), r.lim.MaxCaptionBytes+utf8.UTFMax)], r.lim.MaxCaptionBytes)
		}
		if skip != "" {
			firstSkip = cmp.Or(firstSkip, skip)
			s.DroppedCaptions = append(s.DroppedCaptions, skip)
			continue
		}
		s.Captions = append(s.Captions, caption)
		s.CaptionTruncated = s.CaptionTruncated || truncated
	}
	if len(s.Captions) == 0 {
		// Not one usable caption: the sample is skipped for the first entry's reason.
		s.SkipReason, s.DroppedCaptions, s.CaptionTruncated = firstSkip, nil, false
		if firstSkip == "" {
			s.SkipReason = SkipMissingCaption // an empty list
		}
		return s
	}
	s.Caption = s.Captions[0]
	return s
}

// captionCell is one caption's bytes; ok is false for a null.
type captionCell struct {
	raw []byte
	ok  bool
}

// captionCells gives row i's captions: one cell, or each entry of a list cell. ok is
// false for a null cell.
func (r *parquetReader) captionCells(i int) (cells []captionCell, ok bool) {
	if !r.plan.captionList {
		raw, ok := cellBytes(r.cols.caption, i)
		return []captionCell{{raw, true}}, ok
	}
	l, isList := r.cols.caption.(array.ListLike)
	if !isList || l.IsNull(i) {
		return nil, false
	}
	start, end := l.ValueOffsets(i)
	values := l.ListValues()
	for j := start; j < end; j++ {
		raw, ok := cellBytes(values, int(j))
		cells = append(cells, captionCell{raw, ok})
	}
	return cells, true
}

func (r *parquetReader) Close() error { return r.cur.close() }

// cellBytes reads a binary or string cell; ok is false for null or for a column absent.
func cellBytes(a arrow.Array, i int) (b []byte, ok bool) {
	if a == nil || a.IsNull(i) {
		return nil, false
	}
	if m, isMasked := a.(maskedArray); isMasked {
		a = m.Array
	}
	switch a := a.(type) {
	case *array.Binary:
		return a.Value(i), true
	case *array.LargeBinary:
		return a.Value(i), true
	case *array.String:
		return []byte(a.Value(i)), true
	case *array.LargeString:
		return []byte(a.Value(i)), true
	case *array.Dictionary:
		return cellBytes(a.Dictionary(), a.GetValueIndex(i))
	}
	return nil, false
}

func cellString(a arrow.Array, i int) (string, bool) {
	if n, ok := cellInt(a, i); ok {
		return strconv.FormatInt(n, 10), true
	}
	b, ok := cellBytes(a, i)
	if !ok || !utf8.Valid(b) {
		return "", false
	}
	return string(b), true
}

func cellInt(a arrow.Array, i int) (int64, bool) {
	if a == nil || a.IsNull(i) {
		return 0, false
	}
	switch a := a.(type) {
	case *array.Int8:
		return int64(a.Value(i)), true
	case *array.Int16:
		return int64(a.Value(i)), true
	case *array.Int32:
		return int64(a.Value(i)), true
	case *array.Int64:
		return a.Value(i), true
	case *array.Uint8:
		return int64(a.Value(i)), true
	case *array.Uint16:
		return int64(a.Value(i)), true
	case *array.Uint32:
		return int64(a.Value(i)), true
	case *array.Uint64:
		return int64(min(a.Value(i), 1<<63-1)), true
	}
	return 0, false
}
