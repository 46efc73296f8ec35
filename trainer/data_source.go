package trainer

import (
	"fmt"
	"strings"

	"github.com/capfilt/capfilt/shards"
)

// SourceKind is the format of a training data source.
type SourceKind string

const (
	// SourceCleaned is the cleaned Parquet `capfilt run` writes: one sample per image
	// per epoch, with one of its accepted captions drawn at random.
	SourceCleaned SourceKind = "cleaned"
	// SourceWeb is raw input shards (WebDataset tar, Parquet) with their web caption:
	// the noisy baseline.
	SourceWeb SourceKind = "web"
	// SourceCOCO is a COCO-style JSON list of human captions with an image folder:
	// every caption is one sample.
	SourceCOCO SourceKind = "coco"
)

// Caption sources of a sample: the cleaned Parquet's two and COCO's human captions.
const (
	CaptionWeb       = shards.SourceWeb
	CaptionSynthetic = shards.SourceSynthetic
	CaptionHuman     = "human"
)

// CaptionSelector chooses which accepted captions of a cleaned Parquet row may be drawn.
type CaptionSelector string

const (
	CaptionsAll       CaptionSelector = "all" // web and synthetic, as the paper trains
	CaptionsWeb       CaptionSelector = "web"
	CaptionsSynthetic CaptionSelector = "synthetic"
)

// ParseCaptionSelector reads web, synthetic or all ("" is all).
func ParseCaptionSelector(s string) (CaptionSelector, error) {
	switch CaptionSelector(s) {
	case "", CaptionsAll:
		return CaptionsAll, nil
	case CaptionsWeb, CaptionsSynthetic:
		return CaptionSelector(s), nil
	}
	return "", fmt.Errorf("captions %q: want web, synthetic or all", s)
}

func (c CaptionSelector) admits(source string) bool {
	return c == CaptionsAll || c == "" || string(c) == source
}

// DataSource is one --data source.
type DataSource struct {
	Kind SourceKind
	// Location: for cleaned and web sources a URL pattern (local or s3://, with brace
	// ranges and globs, as shards.Expand reads it); for coco the JSON file.
	Location string
	// ImageRoot is the folder (local or s3://) a coco source's image paths are
	// relative to; empty means the JSON file's folder.
	ImageRoot string
}

// ParseDataSource reads a source written KIND:LOCATION:
//
//	cleaned:s3://bucket/run1/*.parquet
//	web:shards/part-{00000..00099}.tar
//	coco:annotations/coco_karpathy_train.json@/data/coco/images
//
// where a coco location may end in @IMAGE_ROOT (split at the last @).
func ParseDataSource(spec string) (DataSource, error) {
	kind, loc, ok := strings.Cut(spec, ":")
	if !ok || loc == "" {
		return DataSource{}, fmt.Errorf("data source %q: want cleaned:PATTERN, web:PATTERN or coco:FILE.json[@IMAGE_ROOT]", spec)
	}
	s := DataSource{Kind: SourceKind(kind), Location: loc}
	switch s.Kind {
	case SourceCleaned, SourceWeb:
	case SourceCOCO:
		if i := strings.LastIndexByte(loc, '@'); i >= 0 {
			s.Location, s.ImageRoot = loc[:i], loc[i+1:]
			if s.Location == "" || s.ImageRoot == "" {
				return DataSource{}, fmt.Errorf("data source %q: empty file or image root around @", spec)
			}
		}
	default:
		return DataSource{}, fmt.Errorf("data source %q: unknown kind %q (want cleaned, web or coco)", spec, kind)
	}
	return s, nil
}

func (s DataSource) String() string {
	if s.ImageRoot != "" {
		return string(s.Kind) + ":" + s.Location + "@" + s.ImageRoot
	}
	return string(s.Kind) + ":" + s.Location
}
