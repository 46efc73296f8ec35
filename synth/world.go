package synth

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"

	"github.com/capfilt/capfilt/blip/tokenizer"
)

// World is a generated synthetic world on disk, with its truth.
type World struct {
	// Dir is the world's folder; every path below is inside it.
	Dir    string
	Config WorldConfig
	// WebShards are the web set's WebDataset tars, in order; WebPattern names them all
	// as one brace pattern ("DIR/web/{00000..00007}.tar") for capfilt run.
	WebShards  []string
	WebPattern string
	// Counts is how many web captions are of each kind.
	Counts          map[CaptionKind]int
	Annotated, Test ImageSet
	// VocabFile is the world's vocab.txt; ModelConfigFile the config.json of the tiny
	// model sized for it (ModelConfigJSON).
	VocabFile, ModelConfigFile string
	// MaxCaptionTokens is the longest caption of the world in tokens, [CLS] and [SEP]
	// included.
	MaxCaptionTokens int

	web     map[string]WebTruth
	webKeys []string
}

// WebTruth is what the world knows of one web sample: the truth its KEY.json holds
// under "synth", beside the img2dataset keys.
type WebTruth struct {
	Key   string      `json:"-"`
	Kind  CaptionKind `json:"kind"`
	Scene Picture     `json:"scene"`
	// Caption is the web caption (KEY.txt); CleanCaption the picture's full caption.
	Caption      string `json:"-"`
	CleanCaption string `json:"clean_caption"`
	// Detail says how a noisy caption is wrong ("colour: red -> blue"), which sort of
	// junk it is (file_name, slogan, empty); SourceKey whose caption an other_image
	// caption is.
	Detail    string `json:"detail,omitempty"`
	SourceKey string `json:"source_key,omitempty"`
}

// ImageSet is the annotated or the test set: COCO-style JSON beside an image folder.
type ImageSet struct {
	// Annotations is the JSON file: a list of AnnotatedImage.
	Annotations string
	Images      []AnnotatedImage
}

// AnnotatedImage is one entry of a set's JSON: COCO-style keys, and the truth under
// "synth", which COCO readers ignore.
type AnnotatedImage struct {
	Image    string   `json:"image"` // relative to the JSON's folder: "images/000001.png"
	Captions []string `json:"caption"`
	ImageID  int      `json:"image_id"`
	Truth    struct {
		Scene        Picture `json:"scene"`
		CleanCaption string  `json:"clean_caption"`
	} `json:"synth"`
}

// ImagePath is where img's file is.
func (s ImageSet) ImagePath(img AnnotatedImage) string {
	return filepath.Join(filepath.Dir(s.Annotations), filepath.FromSlash(img.Image))
}

// ByID finds an image by its image_id.
func (s ImageSet) ByID(id int) (AnnotatedImage, bool) {
	i, ok := slices.BinarySearchFunc(s.Images, id, func(img AnnotatedImage, id int) int { return img.ImageID - id })
	if !ok {
		return AnnotatedImage{}, false
	}
	return s.Images[i], true
}

// WebTruth is the truth of the web sample with this key.
func (w *World) WebTruth(key string) (WebTruth, bool) {
	t, ok := w.web[key]
	return t, ok
}

// WebKeys are the web samples' keys, in shard order.
func (w *World) WebKeys() []string { return slices.Clone(w.webKeys) }

// The streams of the world's random draws: each image's picture and captions come from
// their own generator, seeded by (seed, set, image), so images can be drawn in any order
// and in parallel, and a set's size does not change the images before it.
const (
	setWeb = iota + 1
	setAnnotated
	setTest
)

func imageRNG(seed uint64, set, i int) *rand.Rand {
	return rand.New(rand.NewPCG(seed, uint64(set)<<40|uint64(i)))
}

func captionRNG(seed uint64, set, i int) *rand.Rand {
	return rand.New(rand.NewPCG(seed, uint64(set)<<40|1<<39|uint64(i)))
}

// planned is one image before it is rendered: its picture and how it is coded.
type planned struct {
	pic     Picture
	format  string // jpg or png
	quality int    // JPEG quality
}

func planImage(seed uint64, set, i int, jpegShare float64) planned {
	rng := imageRNG(seed, set, i)
	p := planned{pic: RandomPicture(rng), format: "png"}
	if rng.Float64() < jpegShare {
		p.format, p.quality = "jpg", 85+rng.IntN(11)
	}
	return p
}

// Generate writes a world to cfg.Out: the web set as WebDataset tars (web/00000.tar, ...),
// the annotated and test sets (annotated/annotations.json, test/annotations.json, each
// beside an images/ folder), vocab.txt, model_config.json and, last, world.json, which
// Open reads. The same config writes the same bytes.
func Generate(ctx context.Context, cfg WorldConfig) (*World, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := prepareOut(cfg.Out, cfg.Overwrite); err != nil {
		return nil, err
	}
	tok, err := tokenizer.New(worldVocab(), tokenizer.BertUncased)
	if err != nil {
		return nil, fmt.Errorf("world vocabulary: %w", err)
	}
	w := &World{Dir: cfg.Out, Config: cfg, web: map[string]WebTruth{}}
	g := &generator{cfg: cfg, tok: tok, total: cfg.WebImages + cfg.AnnotatedImages + cfg.TestImages}
	if err := g.writeWeb(ctx, w); err != nil {
		return nil, err
	}
	if w.Annotated, err = g.writeImageSet(ctx, "annotated", setAnnotated, cfg.AnnotatedImages, cfg.PartialCaptions); err != nil {
		return nil, err
	}
	if w.Test, err = g.writeImageSet(ctx, "test", setTest, cfg.TestImages, 0); err != nil {
		return nil, err
	}
	w.MaxCaptionTokens = g.maxTokens
	if err := writeWorldFiles(w); err != nil {
		return nil, err
	}
	return w, nil
}

// webCaption draws the web caption of image i of kind k, with what the truth says of it.
func webCaption(pics []planned, i int, k CaptionKind, cfg WorldConfig) WebTruth {
	rng := captionRNG(cfg.Seed, setWeb, i)
	p := pics[i].pic
	t := WebTruth{Kind: k, Scene: p, CleanCaption: p.CleanCaption()}
	// The share of true captions that are incomplete, for noise made from a true caption.
	partial := 0.5
	if cfg.Noise < 1 {
		partial = cfg.Incomplete / (1 - cfg.Noise)
	}
	switch k {
	case KindFull:
		t.Caption = p.fullCaption(rng)
	case KindIncomplete:
		t.Caption = p.incompleteCaption(rng)
	case KindWrongAttribute:
		t.Caption, t.Detail = p.wrongCaption(rng, partial)
	case KindOtherImage:
		t.Caption, t.SourceKey = otherCaption(pics, i, rng, partial, cfg.PerShard)
	case KindJunk:
		t.Caption, t.Detail = junkCaption(rng)
	}
	return t
}

// otherCaption is a true caption of another image of the set that is false of image i.
func otherCaption(pics []planned, i int, rng *rand.Rand, partial float64, perShard int) (string, string) {
	p := pics[i].pic
	for range 100 {
		j := rng.IntN(len(pics) - 1)
		if j >= i {
			j++
		}
		other := pics[j].pic
		caption := other.fullCaption(rng)
		if rng.Float64() < partial {
			caption = other.incompleteCaption(rng)
		}
		if !AttributeAccuracy(p, caption).True() {
			return caption, webKey(j, perShard)
		}
	}
	// Only a set of near-identical pictures gets here; a full caption of another image
	// is then the best the set has, and it is checked once more.
	for j := range pics {
		if j != i && !AttributeAccuracy(p, pics[j].pic.CleanCaption()).True() {
			return pics[j].pic.CleanCaption(), webKey(j, perShard)
		}
	}
	return "", ""
}

// webKey is img2dataset's key of web image i: 5 digits of shard, 4 of sample.
func webKey(i, perShard int) string { return fmt.Sprintf("%05d%04d", i/perShard, i%perShard) }
