package eval

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"strconv"
	"strings"
)

// ReadPredictions reads a COCO results file: [{"image_id": ID, "caption": "..."}, ...],
// other fields ignored. An error names the file, the entry and the field.
func ReadPredictions(file string) ([]Prediction, error) {
	entries, err := readArray(file)
	if err != nil {
		return nil, err
	}
	preds := make([]Prediction, 0, len(entries))
	for i, e := range entries {
		at := fmt.Sprintf("%s: entry %d", file, i)
		id, err := e.imageID(at, "image_id")
		if err != nil {
			return nil, err
		}
		caption, err := e.text(at, "caption")
		if err != nil {
			return nil, err
		}
		preds = append(preds, Prediction{ImageID: id, Caption: caption})
	}
	return preds, nil
}

// ReadReferences reads the reference captions of an evaluation set, in either form:
//
//   - COCO annotations: {"images": [{"id", "file_name"}, ...], "annotations":
//     [{"image_id", "caption"}, ...]} (images optional: they only supply file names);
//   - BLIP's (Karpathy) list: [{"image": "path", "caption": "..." | ["...", ...],
//     "image_id": ID}, ...], entries of one image merged. Without image_id the id is
//     what BLIP's eval derives from the path: the last "_" field of the file name
//     without extension, as an integer (COCO_val2014_000000391895.jpg → 391895); a
//     file name without a numeric last field is its own id (the whole path).
func ReadReferences(file string) (*References, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read references: %w", err)
	}
	refs := &References{Source: file, byID: map[ImageID]int{}}
	switch firstByte(data) {
	case '{':
		err = refs.readCOCO(file, data)
	case '[':
		err = refs.readList(file, data)
	default:
		return nil, fmt.Errorf("%s: want a COCO annotation object or a JSON list of images", file)
	}
	if err != nil {
		return nil, err
	}
	if len(refs.Images) == 0 {
		return nil, fmt.Errorf("%s: no reference captions", file)
	}
	return refs, nil
}

func (r *References) add(id ImageID, file string, captions ...string) {
	i, ok := r.byID[id]
	if !ok {
		i = len(r.Images)
		r.byID[id] = i
		r.Images = append(r.Images, RefImage{ID: id})
	}
	if file != "" && r.Images[i].File == "" {
		r.Images[i].File = file
	}
	r.Images[i].Captions = append(r.Images[i].Captions, captions...)
}

func (r *References) readCOCO(file string, data []byte) error {
	var doc struct {
		Images      []jsonObject `json:"images"`
		Annotations []jsonObject `json:"annotations"`
	}
	if err := decodeStrict(data, &doc); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	if doc.Annotations == nil {
		return fmt.Errorf("%s: no \"annotations\" list", file)
	}
	names := map[ImageID]string{}
	for i, im := range doc.Images {
		at := fmt.Sprintf("%s: images[%d]", file, i)
		id, err := im.imageID(at, "id")
		if err != nil {
			return err
		}
		if _, ok := im["file_name"]; ok {
			if names[id], err = im.text(at, "file_name"); err != nil {
				return err
			}
		}
	}
	for i, a := range doc.Annotations {
		at := fmt.Sprintf("%s: annotations[%d]", file, i)
		id, err := a.imageID(at, "image_id")
		if err != nil {
			return err
		}
		caption, err := a.text(at, "caption")
		if err != nil {
			return err
		}
		r.add(id, names[id], caption)
	}
	return nil
}

func (r *References) readList(file string, data []byte) error {
	var entries []jsonObject
	if err := decodeStrict(data, &entries); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	for i, e := range entries {
		at := fmt.Sprintf("%s: entry %d", file, i)
		image, err := e.text(at, "image")
		if err != nil {
			return err
		}
		id := idFromPath(image)
		if _, ok := e["image_id"]; ok {
			if id, err = e.imageID(at, "image_id"); err != nil {
				return err
			}
		}
		captions, err := e.texts(at, "caption")
		if err != nil {
			return err
		}
		r.add(id, image, captions...)
	}
	return nil
}

// idFromPath is BLIP's image id for a list entry without one.
func idFromPath(p string) ImageID {
	base := path.Base(strings.ReplaceAll(p, "\\", "/"))
	stem := strings.TrimSuffix(base, path.Ext(base))
	last := stem[strings.LastIndexByte(stem, '_')+1:]
	if n, err := strconv.ParseInt(last, 10, 64); err == nil && n >= 0 {
		return ImageID(strconv.FormatInt(n, 10))
	}
	return ImageID(p)
}

// jsonObject is one JSON object, its fields decoded on demand so that an error can
// name the field.
type jsonObject map[string]json.RawMessage

func readArray(file string) ([]jsonObject, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read predictions: %w", err)
	}
	if firstByte(data) != '[' {
		return nil, fmt.Errorf("%s: want a JSON list of {\"image_id\", \"caption\"} objects", file)
	}
	var out []jsonObject
	if err := decodeStrict(data, &out); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return out, nil
}

func (o jsonObject) field(at, name string) (json.RawMessage, error) {
	v, ok := o[name]
	if !ok || string(v) == "null" {
		return nil, fmt.Errorf("%s: no field %q", at, name)
	}
	return v, nil
}

// imageID reads a field holding an image id: an integer or a string.
func (o jsonObject) imageID(at, name string) (ImageID, error) {
	v, err := o.field(at, name)
	if err != nil {
		return "", err
	}
	switch v[0] {
	case '"':
		var s string
		if err := json.Unmarshal(v, &s); err != nil || s == "" {
			return "", fmt.Errorf("%s: field %q: want a non-empty string or an integer, got %s", at, name, v)
		}
		return ImageID(s), nil
	default:
		n, err := strconv.ParseInt(string(v), 10, 64)
		if err != nil {
			return "", fmt.Errorf("%s: field %q: want an integer or a string, got %s", at, name, v)
		}
		return ImageID(strconv.FormatInt(n, 10)), nil
	}
}

func (o jsonObject) text(at, name string) (string, error) {
	v, err := o.field(at, name)
	if err != nil {
		return "", err
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", fmt.Errorf("%s: field %q: want a string, got %s", at, name, abbreviate(v))
	}
	return s, nil
}

// texts reads a string or a non-empty list of strings.
func (o jsonObject) texts(at, name string) ([]string, error) {
	v, err := o.field(at, name)
	if err != nil {
		return nil, err
	}
	if v[0] != '[' {
		s, err := o.text(at, name)
		return []string{s}, err
	}
	var list []string
	if err := json.Unmarshal(v, &list); err != nil || len(list) == 0 {
		return nil, fmt.Errorf("%s: field %q: want a string or a non-empty list of strings, got %s", at, name, abbreviate(v))
	}
	return list, nil
}

func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("trailing data after the JSON value")
	}
	return nil
}

func firstByte(data []byte) byte {
	t := bytes.TrimLeft(data, " \t\r\n")
	if len(t) == 0 {
		return 0
	}
	return t[0]
}

func abbreviate(v json.RawMessage) string {
	if len(v) > 40 {
		return string(v[:40]) + "…"
	}
	return string(v)
}
