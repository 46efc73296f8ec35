package shards

import (
	"bytes"
	"strings"
	"unicode/utf8"
)

// Skip reasons: short, stable strings that name why a sample was not usable. They are the
// keys of ShardStats.Skipped, so renaming one breaks dashboards over old stats.json files.
const (
	SkipMissingImage      = "missing_image"      // a key with no image member / a null image cell
	SkipMissingCaption    = "missing_caption"    // a key with no .txt member / a null caption cell
	SkipEmptyCaption      = "empty_caption"      // the caption is only white space
	SkipNonUTF8Caption    = "non_utf8_caption"   // the caption bytes are not UTF-8
	SkipMemberTooLarge    = "member_too_large"   // a member or cell is over Limits.MaxMemberBytes
	SkipUnsafePath        = "unsafe_path"        // an absolute or ".." member name, or one not UTF-8
	SkipUnsupportedMember = "unsupported_member" // a link, device or sparse file where data was expected
	SkipBadMetadata       = "bad_metadata"       // KEY.json is not a JSON object
	SkipTooManyCaptions   = "too_many_captions"  // a caption list entry past Limits.MaxCaptions (a dropped caption)
	SkipTruncatedMember   = "truncated_member"   // the shard ended inside this sample's data
	SkipDuplicateKey      = "duplicate_key"      // a key seen earlier in the shard, after other keys

	// The image decoder stage sets these two; they are listed here so that every reason in
	// a stats.json file has one home.
	SkipCorruptImage  = "corrupt_image"   // the bytes do not decode as an image
	SkipTooManyPixels = "too_many_pixels" // the header declares more pixels than allowed
)

// Sample is one image-text pair from an input shard, or, when SkipReason is set, the
// record of a key that could not be used and why.
type Sample struct {
	Key      string // the WebDataset key, the Parquet key column, or the row number
	URL      string // where the image was downloaded from, when the shard says
	Image    []byte // the original encoded bytes
	ImageExt string // "jpg", "png", "webp", ... from the member name or the bytes

	// Captions are the sample's input captions, trimmed of surrounding white space, in
	// input order: one from a .txt member or a string column, every usable entry of a
	// list<string> column (COCO-style "sentences"). Each is to be scored on its own.
	// Caption is Captions[0], for stages that take one caption per image.
	Captions         []string
	Caption          string
	CaptionTruncated bool // a caption was cut to Limits.MaxCaptionBytes
	// CaptionSource is what the input captions are: SourceWeb, or SourceHuman when the
	// shard was opened with ShardOptions.HumanCaptions.
	CaptionSource string
	// DroppedCaptions holds, for each entry of a caption list that was not usable, why
	// (SkipEmptyCaption, SkipNonUTF8Caption, SkipMissingCaption for a null, SkipTooManyCaptions);
	// ShardStats.CountSample counts them. A sample none of whose captions is usable is
	// skipped instead.
	DroppedCaptions []string

	Meta map[string]any // KEY.json, when present
	// MetaJSON is KEY.json byte for byte (img2dataset's status, exif, sha256,
	// original_width, ...): what the cleaned output's meta column holds.
	MetaJSON      []byte
	Width, Height int // from the metadata when present, else 0

	// Kept are the input Parquet columns passed through typed (ParquetColumns.Keep).
	Kept KeptColumns

	SkipReason string // empty when the sample is usable
}

// SampleReader streams the samples of one shard in order. Next returns io.EOF after the
// last sample. An error other than io.EOF ends the shard: the samples returned before it
// are valid, and the error says where the shard went bad.
type SampleReader interface {
	Next() (Sample, error)
	Close() error
}

// Limits bound what one sample may cost. Zero fields take the defaults.
type Limits struct {
	MaxMemberBytes   int64 // largest image member or cell read; default 32 MiB
	MaxCaptionBytes  int   // longer captions are truncated (and counted); default 4 KiB
	MaxMetadataBytes int64 // largest KEY.json read; default 1 MiB
	MaxCaptions      int   // most captions kept from one caption list; default 32
}

// Default limits.
const (
	DefaultMaxMemberBytes   = 32 << 20
	DefaultMaxCaptionBytes  = 4 << 10
	DefaultMaxMetadataBytes = 1 << 20
	DefaultMaxCaptions      = 32
)

func (l Limits) withDefaults() Limits {
	if l.MaxMemberBytes <= 0 {
		l.MaxMemberBytes = DefaultMaxMemberBytes
	}
	if l.MaxCaptionBytes <= 0 {
		l.MaxCaptionBytes = DefaultMaxCaptionBytes
	}
	if l.MaxMetadataBytes <= 0 {
		l.MaxMetadataBytes = DefaultMaxMetadataBytes
	}
	if l.MaxCaptions <= 0 {
		l.MaxCaptions = DefaultMaxCaptions
	}
	return l
}

// cleanCaption applies the caption rules shared by every input format to raw caption
// bytes, of which at most max are kept (raw may hold a few more, to tell a cut rune from
// an invalid one). It returns the caption, whether it was truncated, and a skip reason.
func cleanCaption(raw []byte, max int) (caption string, truncated bool, skip string) {
	if len(raw) > max {
		truncated = true
		// Back up over at most one cut rune; anything else invalid is caught below.
		cut := max
		for i := 0; i < utf8.UTFMax-1 && cut > 0 && !utf8.RuneStart(raw[cut]); i++ {
			cut--
		}
		raw = raw[:cut]
	}
	if !utf8.Valid(raw) {
		return "", truncated, SkipNonUTF8Caption
	}
	caption = strings.TrimSpace(string(raw))
	if caption == "" {
		return "", truncated, SkipEmptyCaption
	}
	return caption, truncated, ""
}

// sniffImageExt names the image format from its magic bytes, for inputs (Parquet cells)
// that carry no file name.
func sniffImageExt(b []byte) string {
	switch {
	case bytes.HasPrefix(b, []byte{0xFF, 0xD8, 0xFF}):
		return "jpg"
	case bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")):
		return "png"
	case len(b) >= 12 && bytes.Equal(b[:4], []byte("RIFF")) && bytes.Equal(b[8:12], []byte("WEBP")):
		return "webp"
	case bytes.HasPrefix(b, []byte("GIF87a")), bytes.HasPrefix(b, []byte("GIF89a")):
		return "gif"
	case bytes.HasPrefix(b, []byte("BM")):
		return "bmp"
	}
	return ""
}
