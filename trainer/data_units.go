package trainer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/capfilt/capfilt/shards"
)

// A unit is one file of a source: a cleaned or input shard, or a COCO JSON. Its
// candidates are the samples it can give without decoding an image, numbered 0…count−1
// in file order; sample ids are unit.base + that ordinal, stable for a given data list.
type unit struct {
	source int
	kind   SourceKind
	url    shards.URL
	count  int64
	base   int64
	coco   []cocoSample // coco units: the samples, in file order
	// damaged is the error a web shard ends with after its last good sample: an epoch
	// reading it stops there too.
	damaged string
}

// cocoSample is one caption of a COCO JSON.
type cocoSample struct {
	image   shards.URL
	caption string
	key     string // the image_id as written, else the image path
	image64 int64  // dense index of the image within the file
}

// candidate is one sample as a unit hands it on: nothing decoded yet.
type candidate struct {
	id       int64 // stable sample id
	imageID  int64
	key      string
	image    []byte     // encoded bytes; nil for coco samples, read by the worker
	imageURL shards.URL // coco samples
	captions []captionText
}

type captionText struct{ text, source string }

// unitReader streams a unit's candidates in ordinal order; next returns io.EOF after
// the last.
type unitReader interface {
	next() (candidate, error)
	close() error
}

// openUnit starts reading u at its first candidate.
func (d *Dataset) openUnit(ctx context.Context, u *unit) (unitReader, error) {
	switch u.kind {
	case SourceCleaned:
		r, obj, err := d.openCleaned(ctx, u.url, false)
		if err != nil {
			return nil, err
		}
		return &cleanedUnit{u: u, r: r, obj: obj, sel: d.opts.Captions}, nil
	case SourceWeb:
		r, err := shards.OpenShard(ctx, d.store, u.url, d.opts.Shard)
		if err != nil {
			return nil, err
		}
		return &webUnit{u: u, r: r}, nil
	case SourceCOCO:
		return &cocoUnit{u: u}, nil
	}
	return nil, fmt.Errorf("unit %s: unknown kind %q", u.url, u.kind)
}

func (d *Dataset) openCleaned(ctx context.Context, u shards.URL, skipImages bool) (*shards.CleanedReader, io.Closer, error) {
	obj, err := d.store.OpenAt(ctx, u)
	if err != nil {
		return nil, nil, err
	}
	r, err := shards.OpenCleaned(obj, u.String(), shards.CleanedReadOptions{SkipImages: skipImages})
	if err != nil {
		obj.Close()
		return nil, nil, err
	}
	if !skipImages && !r.HasImages() {
		r.Close()
		obj.Close()
		return nil, nil, fmt.Errorf("cleaned parquet %s has no image column (written without images): it cannot be trained on", u)
	}
	return r, obj, nil
}

// selectCaptions keeps the captions the selector admits.
func selectCaptions(cs []shards.Caption, sel CaptionSelector) []captionText {
	var out []captionText
	for _, c := range cs {
		if sel.admits(c.Source) {
			out = append(out, captionText{text: c.Text, source: c.Source})
		}
	}
	return out
}

type cleanedUnit struct {
	u       *unit
	r       *shards.CleanedReader
	obj     io.Closer
	sel     CaptionSelector
	ordinal int64
}

func (c *cleanedUnit) next() (candidate, error) {
	for {
		row, err := c.r.Next()
		if errors.Is(err, io.EOF) {
			if c.ordinal != c.u.count {
				return candidate{}, fmt.Errorf("cleaned parquet %s: %d usable rows, %d when the data was indexed (did the file change?)", c.u.url, c.ordinal, c.u.count)
			}
			return candidate{}, io.EOF
		}
		if err != nil {
			return candidate{}, err
		}
		caps := selectCaptions(row.Captions, c.sel)
		if len(caps) == 0 {
			continue // not a candidate: counted when indexed
		}
		id := c.u.base + c.ordinal
		c.ordinal++
		return candidate{id: id, imageID: id, key: row.Key, image: row.Image, captions: caps}, nil
	}
}

func (c *cleanedUnit) close() error { return errors.Join(c.r.Close(), c.obj.Close()) }

type webUnit struct {
	u       *unit
	r       shards.SampleReader
	ordinal int64
}

func (w *webUnit) next() (candidate, error) {
	for {
		s, err := w.r.Next()
		if err != nil {
			if errors.Is(err, io.EOF) || (w.u.damaged != "" && w.ordinal == w.u.count) {
				if w.ordinal != w.u.count {
					return candidate{}, fmt.Errorf("shard %s: %d usable samples, %d when the data was indexed (did the file change?)", w.u.url, w.ordinal, w.u.count)
				}
				return candidate{}, io.EOF
			}
			return candidate{}, err
		}
		if s.SkipReason != "" {
			continue // counted when indexed
		}
		id := w.u.base + w.ordinal
		w.ordinal++
		return candidate{id: id, imageID: id, key: s.Key, image: s.Image,
			captions: []captionText{{text: s.Caption, source: CaptionWeb}}}, nil
	}
}

func (w *webUnit) close() error { return w.r.Close() }

type cocoUnit struct {
	u       *unit
	ordinal int64
}

func (c *cocoUnit) next() (candidate, error) {
	if c.ordinal >= int64(len(c.u.coco)) {
		return candidate{}, io.EOF
	}
	s := c.u.coco[c.ordinal]
	id := c.u.base + c.ordinal
	c.ordinal++
	return candidate{id: id, imageID: c.u.base + s.image64, key: s.key, imageURL: s.image,
		captions: []captionText{{text: s.caption, source: CaptionHuman}}}, nil
}

func (c *cocoUnit) close() error { return nil }

// skipTo moves a reader past the candidates before ordinal n without keeping them;
// a COCO unit jumps there.
func skipTo(r unitReader, n int64) error {
	if c, ok := r.(*cocoUnit); ok {
		c.ordinal = n
		return nil
	}
	for range n {
		if _, err := r.next(); err != nil {
			return err
		}
	}
	return nil
}

// readCOCO parses a COCO-style training list: [{"image": PATH, "caption": "..." |
// ["...", ...], "image_id": ID}, ...], image paths relative to root. Every caption is
// one sample; entries that share an image_id (or, without one, an image path) are one
// image. A malformed entry is an error naming the file, the entry and the field.
func readCOCO(data []byte, file string, root shards.URL) ([]cocoSample, error) {
	var entries []map[string]json.RawMessage
	if err := json.Unmarshal(data, &entries); err != nil {
		return nil, fmt.Errorf("coco source %s: want a JSON list of {\"image\", \"caption\", \"image_id\"}: %w", file, err)
	}
	images := map[string]int64{}
	var out []cocoSample
	for i, e := range entries {
		at := func(field, format string, args ...any) error {
			return fmt.Errorf("coco source %s: entry %d: field %q: %s", file, i, field, fmt.Sprintf(format, args...))
		}
		var path string
		if raw, ok := e["image"]; !ok || json.Unmarshal(raw, &path) != nil || path == "" {
			return nil, at("image", "want a non-empty path string")
		}
		key := path
		if raw, ok := e["image_id"]; ok && string(raw) != "null" {
			var s string
			if json.Unmarshal(raw, &s) == nil && s != "" {
				key = s
			} else if n, err := strconv.ParseInt(string(raw), 10, 64); err == nil {
				key = strconv.FormatInt(n, 10)
			} else {
				return nil, at("image_id", "want a string or an integer, got %s", raw)
			}
		}
		var captions []string
		raw, ok := e["caption"]
		if !ok {
			return nil, at("caption", "missing")
		}
		var one string
		if json.Unmarshal(raw, &one) == nil {
			captions = []string{one}
		} else if json.Unmarshal(raw, &captions) != nil || len(captions) == 0 {
			return nil, at("caption", "want a string or a non-empty list of strings")
		}
		idx, seen := images[key]
		if !seen {
			idx = int64(len(images))
			images[key] = idx
		}
		u := root.Join(path)
		for _, c := range captions {
			out = append(out, cocoSample{image: u, caption: c, key: key, image64: idx})
		}
	}
	return out, nil
}
