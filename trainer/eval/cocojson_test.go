package eval

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestReadPredictionsAcceptsNumberAndStringIDs(t *testing.T) {
	p := writeFile(t, "res.json", `[{"image_id": 391895, "caption": "a man on a bike", "score": 1},
		{"image_id": "coco_7", "caption": "a cat"}]`)
	got, err := ReadPredictions(p)
	if err != nil {
		t.Fatal(err)
	}
	want := []Prediction{{ImageID: "391895", Caption: "a man on a bike"}, {ImageID: "coco_7", Caption: "a cat"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v", got)
	}
}

func TestReadReferencesCOCOFormat(t *testing.T) {
	p := writeFile(t, "ann.json", `{"info": {}, "images": [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "b.jpg"}],
		"annotations": [{"image_id": 2, "id": 10, "caption": "two"}, {"image_id": 1, "caption": "one"}, {"image_id": 2, "caption": "deux"}]}`)
	refs, err := ReadReferences(p)
	if err != nil {
		t.Fatal(err)
	}
	want := []RefImage{{ID: "2", File: "b.jpg", Captions: []string{"two", "deux"}}, {ID: "1", File: "a.jpg", Captions: []string{"one"}}}
	if !reflect.DeepEqual(refs.Images, want) {
		t.Errorf("got %+v", refs.Images)
	}
}

// BLIP's Karpathy test list gives captions as lists and no image_id: the id is the
// last "_" field of the file name (leading zeros dropped); the train list gives one
// caption per entry with an image_id, merged per image.
func TestReadReferencesBLIPListFormat(t *testing.T) {
	p := writeFile(t, "test.json", `[
		{"image": "val2014/COCO_val2014_000000391895.jpg", "caption": ["A man.", "A biker."]},
		{"image": "flickr30k-images/1007129816.jpg", "caption": ["a dog"]},
		{"image": "x/photo.png", "caption": "plain"},
		{"image": "t/1.jpg", "caption": "first", "image_id": "coco_1"},
		{"image": "t/1.jpg", "caption": "second", "image_id": "coco_1"}]`)
	refs, err := ReadReferences(p)
	if err != nil {
		t.Fatal(err)
	}
	want := []RefImage{
		{ID: "391895", File: "val2014/COCO_val2014_000000391895.jpg", Captions: []string{"A man.", "A biker."}},
		{ID: "1007129816", File: "flickr30k-images/1007129816.jpg", Captions: []string{"a dog"}},
		{ID: "x/photo.png", File: "x/photo.png", Captions: []string{"plain"}},
		{ID: "coco_1", File: "t/1.jpg", Captions: []string{"first", "second"}},
	}
	if !reflect.DeepEqual(refs.Images, want) {
		t.Errorf("got %+v", refs.Images)
	}
	if img, ok := refs.Lookup("391895"); !ok || len(img.Captions) != 2 {
		t.Errorf("lookup: %+v %v", img, ok)
	}
}

func TestBadFilesNameTheFileEntryAndField(t *testing.T) {
	cases := []struct {
		name, body string
		read       func(string) error
		want       []string
	}{
		{"res.json", `[{"image_id": 1}]`, predictions, []string{"res.json", "entry 0", `"caption"`}},
		{"res.json", `[{"image_id": 1, "caption": 5}]`, predictions, []string{"entry 0", `"caption"`, "want a string"}},
		{"res.json", `[{"image_id": 1.5, "caption": "x"}]`, predictions, []string{`"image_id"`, "1.5"}},
		{"res.json", `{"image_id": 1}`, predictions, []string{"res.json", "JSON list"}},
		{"res.json", `[{"image_id": 1, "caption": "x"}] junk`, predictions, []string{"res.json"}},
		{"ann.json", `{"images": []}`, references, []string{"ann.json", `"annotations"`}},
		{"ann.json", `{"annotations": [{"image_id": 1, "caption": "a"}, {"caption": "b"}]}`, references, []string{"annotations[1]", `"image_id"`}},
		{"ann.json", `[{"image": "a.jpg", "caption": []}]`, references, []string{"entry 0", `"caption"`, "non-empty list"}},
		{"ann.json", `[{"caption": "a"}]`, references, []string{"entry 0", `"image"`}},
		{"ann.json", `[]`, references, []string{"no reference captions"}},
		{"ann.json", `42`, references, []string{"ann.json"}},
	}
	for _, c := range cases {
		err := c.read(writeFile(t, c.name, c.body))
		if err == nil {
			t.Errorf("%s %s: no error", c.name, c.body)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s %s: error %q lacks %q", c.name, c.body, err, w)
			}
		}
	}
}

func predictions(p string) error { _, err := ReadPredictions(p); return err }
func references(p string) error  { _, err := ReadReferences(p); return err }
