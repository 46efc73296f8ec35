package demo

import (
	"encoding/base64"
	"net/http"

	"github.com/capfilt/capfilt/shards"
	"github.com/capfilt/capfilt/synth"
)

// GalleryItem is one web image of the report's gallery, as the paper's CapFilt figure
// shows them: its web text and synthetic caption, each with the filter's score and
// decision, and the world's truth.
type GalleryItem struct {
	Key string `json:"key"`
	// Image is the image's original bytes as a data: URI.
	Image     string            `json:"image"`
	Web       GalleryCaption    `json:"web"`
	Synthetic GalleryCaption    `json:"synthetic"`
	Kind      synth.CaptionKind `json:"kind"`
	Detail    string            `json:"detail,omitempty"`
	Clean     string            `json:"clean_caption"`
}

// GalleryCaption is a caption with the filter's match probability and decision.
type GalleryCaption struct {
	Text string  `json:"text"`
	ITM  float32 `json:"itm"`
	Kept bool    `json:"kept"`
}

// galleryPerKind is how many images of each web caption kind the gallery shows.
const galleryPerKind = 4

// gallery picks the first images of each caption kind, in key order: their captions and
// scores from the filter-off run (where every caption is kept, with its score) and the
// decisions from the filtered run.
func (s *seedRun) gallery(filtered, all *CapFiltRun) []GalleryItem {
	var out []GalleryItem
	for _, kind := range synth.CaptionKinds {
		n := 0
		for _, key := range s.world.WebKeys() {
			t, _ := s.world.WebTruth(key)
			row, ok := all.rows[key]
			if t.Kind != kind || !ok || n == galleryPerKind {
				continue
			}
			web, _ := caption(row, shards.SourceWeb)
			syn, _ := caption(row, shards.SourceSynthetic)
			it := GalleryItem{Key: key, Image: dataURI(row.Image), Kind: t.Kind, Detail: t.Detail, Clean: t.CleanCaption,
				Web: GalleryCaption{Text: web.Text, ITM: web.ITM}, Synthetic: GalleryCaption{Text: syn.Text, ITM: syn.ITM}}
			if frow, ok := filtered.rows[key]; ok {
				_, it.Web.Kept = caption(frow, shards.SourceWeb)
				_, it.Synthetic.Kept = caption(frow, shards.SourceSynthetic)
			}
			out = append(out, it)
			n++
		}
	}
	return out
}

func dataURI(b []byte) string {
	return "data:" + http.DetectContentType(b) + ";base64," + base64.StdEncoding.EncodeToString(b)
}
