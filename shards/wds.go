package shards

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"path"
	"strings"
)

// OutputFormat is the format of the cleaned shards a run writes.
type OutputFormat string

// Output formats.
const (
	OutputParquet OutputFormat = "parquet" // OUT/<stem>.parquet, the cleaned Parquet (CleanedWriter)
	OutputWDS     OutputFormat = "wds"     // OUT/<stem>.tar, a WebDataset shard (WDSWriter)
)

// ParseOutputFormat reads an output format; "" is OutputParquet.
func ParseOutputFormat(s string) (OutputFormat, error) {
	switch f := OutputFormat(strings.ToLower(strings.TrimSpace(s))); f {
	case "", OutputParquet:
		return OutputParquet, nil
	case OutputWDS:
		return f, nil
	}
	return "", fmt.Errorf("output format %q: want %q or %q", s, OutputParquet, OutputWDS)
}

// Ext is the extension of the format's files, with its dot.
func (f OutputFormat) Ext() string {
	if f == OutputWDS {
		return ".tar"
	}
	return ".parquet"
}

// OutputURL is where the cleaned shard of input shard goes under the output prefix out,
// in format f (CleanedURL for Parquet).
func OutputURL(out, shard URL, f OutputFormat) URL { return out.Join(shard.Stem() + f.Ext()) }

// WDSWriter writes the cleaned rows of one shard as a WebDataset tar, for the
// BLIP/open_clip-style loaders: per row, in order,
//
//	KEY.jpg|png|webp|gif  the original image bytes, named by the format they are in
//	KEY.txt               the accepted captions, one per line
//	KEY.json              {"key", "url", "source_shard", "width", "height", "captions": [{"text",
//	                      "source", "itm", "itc"}], "rejected" (WithRejected), "captioner",
//	                      "filter", "run_id", "meta": the source JSON, "columns": kept columns}
//
// WebDataset splits a member name at the first dot of its last path element, so a key
// with dots there ("img.v2") is written as "img_v2"; the json's "key" is always the row's
// key. A caption's own line breaks become spaces in KEY.txt (the json keeps the text as
// is), and scores that are not numbers are null in the json. It writes the same rows, and
// refuses the same ones, as CleanedWriter, and like it never closes w: the caller
// publishes the object (ObjectWriter.Close) once Close returned nil.
type WDSWriter struct {
	opts    CleanedOptions
	meta    CleanedMeta
	tw      *tar.Writer
	members map[string]string // member key -> row key, to refuse two rows one name
	rows    int64
	closed  bool
	lastErr error
}

// NewWDSWriter starts a WebDataset shard on w.
func NewWDSWriter(w io.Writer, meta CleanedMeta, opts CleanedOptions) (*WDSWriter, error) {
	if opts.OmitImages {
		return nil, errors.New("webdataset output: a shard without images is no WebDataset; write Parquet to omit them")
	}
	return &WDSWriter{opts: opts, meta: meta, tw: tar.NewWriter(noCloseWriter{w}), members: map[string]string{}}, nil
}

// wdsKey is the member key a row is written under.
func wdsKey(key string) string {
	dir, base := path.Split(key)
	return dir + strings.ReplaceAll(base, ".", "_")
}

type wdsCaption struct {
	Text   string    `json:"text"`
	Source string    `json:"source"`
	ITM    jsonScore `json:"itm"`
	ITC    jsonScore `json:"itc"`
}

// jsonScore is a score that encodes NaN and infinities, which JSON has not, as null.
type jsonScore float32

func (s jsonScore) MarshalJSON() ([]byte, error) {
	if f := float64(s); math.IsNaN(f) || math.IsInf(f, 0) {
		return []byte("null"), nil
	}
	return json.Marshal(float32(s))
}

type wdsRecord struct {
	Key         string          `json:"key"`
	URL         *string         `json:"url"`
	SourceShard string          `json:"source_shard"`
	Width       int             `json:"width"`
	Height      int             `json:"height"`
	Captions    []wdsCaption    `json:"captions"`
	Rejected    []wdsCaption    `json:"rejected,omitempty"`
	Captioner   string          `json:"captioner"`
	Filter      string          `json:"filter"`
	RunID       string          `json:"run_id"`
	Meta        json.RawMessage `json:"meta"`
	Columns     map[string]any  `json:"columns,omitempty"`
}

func wdsCaptions(cs []Caption) []wdsCaption {
	out := make([]wdsCaption, len(cs))
	for i, c := range cs {
		out[i] = wdsCaption{Text: c.Text, Source: c.Source, ITM: jsonScore(c.ITM), ITC: jsonScore(c.ITC)}
	}
	return out
}

// Write adds one row's members. A row that breaks the rules is refused with an error
// naming its key, and the shard stays valid.
func (w *WDSWriter) Write(row CleanedRow) error {
	if w.closed {
		return errors.New("webdataset output: write after close")
	}
	if w.lastErr != nil {
		return w.lastErr
	}
	if err := checkCleanedRow(row, w.opts); err != nil {
		return err
	}
	ext := sniffImageExt(row.Image)
	if ext == "" {
		return fmt.Errorf("cleaned row %q: the image bytes are in no format a WebDataset loader names (jpg, png, webp, gif, bmp)", row.Key)
	}
	key := wdsKey(row.Key)
	if prev, dup := w.members[key]; dup {
		return fmt.Errorf("cleaned row %q: its members would be named %q, as those of row %q", row.Key, key, prev)
	}
	rec := wdsRecord{Key: row.Key, SourceShard: row.SourceShard, Width: row.Width, Height: row.Height,
		Captions: wdsCaptions(row.Captions), Captioner: row.Captioner, Filter: row.Filter, RunID: w.meta.RunID,
		Meta: row.Meta, Columns: row.Kept.Values()}
	if row.URL != "" {
		rec.URL = &row.URL
	}
	if w.opts.WithRejected {
		rec.Rejected = wdsCaptions(row.Rejected)
	}
	var js bytes.Buffer
	enc := json.NewEncoder(&js)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(rec); err != nil {
		return fmt.Errorf("cleaned row %q: encode KEY.json: %w", row.Key, err)
	}
	lines := make([]string, len(row.Captions))
	for i, c := range row.Captions {
		lines[i] = strings.Join(strings.FieldsFunc(c.Text, func(r rune) bool { return r == '\n' || r == '\r' }), " ")
	}
	w.members[key] = row.Key
	for _, m := range []struct {
		ext  string
		data []byte
	}{{ext, row.Image}, {"txt", []byte(strings.Join(lines, "\n"))}, {"json", bytes.TrimSuffix(js.Bytes(), []byte("\n"))}} {
		// Fixed modes and times: a retried shard writes the same bytes.
		hdr := &tar.Header{Name: key + "." + m.ext, Mode: 0o644, Size: int64(len(m.data)), Typeflag: tar.TypeReg}
		if err := w.tw.WriteHeader(hdr); err != nil {
			w.lastErr = fmt.Errorf("webdataset output: row %q: %w", row.Key, err)
			return w.lastErr
		}
		if _, err := w.tw.Write(m.data); err != nil {
			w.lastErr = fmt.Errorf("webdataset output: row %q: %w", row.Key, err)
			return w.lastErr
		}
	}
	w.rows++
	return nil
}

// Rows is how many rows were written.
func (w *WDSWriter) Rows() int64 { return w.rows }

// Close writes the end-of-archive marker.
func (w *WDSWriter) Close() error {
	if w.closed {
		return nil
	}
	w.closed = true
	if w.lastErr != nil {
		return w.lastErr
	}
	if err := w.tw.Close(); err != nil {
		return fmt.Errorf("webdataset output: finish shard: %w", err)
	}
	return nil
}
