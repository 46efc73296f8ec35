package shards

import (
	"archive/tar"
	"bytes"
	"compress/flate"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"unicode/utf8"
)

// The member extensions a WebDataset sample is made of. Members with other extensions
// (.cls, .npy, ...) are ignored: they neither form samples nor split one.
var (
	imageExts = map[string]bool{"jpg": true, "jpeg": true, "png": true, "webp": true}
	textExt   = "txt"
	metaExt   = "json"
)

// OpenTar reads a WebDataset tar as img2dataset writes it, streaming: members that share a
// key (KEY.jpg|jpeg|png|webp, KEY.txt, KEY.json) form one sample, and samples come out in
// the order their members appear. As in WebDataset, a sample's members must be adjacent;
// a key that comes back after another key is counted as a sample skipped for
// SkipDuplicateKey, never merged into the first. A gzip-compressed tar is recognised by
// its magic bytes, whatever its name says, and read as it streams. Members are read into
// memory, one sample at a time, and never written to disk. name is used in errors only.
//
// How a tar ends: io.EOF after its end-of-archive marker (a zero-byte stream is an empty
// shard); a *DamageError when it broke part-way, after the samples read before the
// damage; a plain error when it is not a tar at all, or when reading the stream itself
// failed (that error wraps the source's, e.g. ErrInterrupted, and is never reported as
// damage).
//
// Closing the reader does not close r.
func OpenTar(r io.Reader, name string, lim Limits) SampleReader {
	return &tarReader{name: name, lim: lim.withDefaults(), src: &sourceReader{r: r}, seen: map[string]bool{}}
}

type tarReader struct {
	name    string
	lim     Limits
	src     *sourceReader   // the bytes as stored, to tell a failed read from damage
	in      *countingReader // the tar stream (after gunzip)
	tr      *tar.Reader
	gzipped bool
	pending *tarSample      // members read so far for the current key
	ready   []Sample        // samples completed, not yet returned
	seen    map[string]bool // keys of the samples begun so far
	headers int             // member headers read
	last    string          // the last member read whole, to say where a bad shard broke
	cur     openMember      // the member whose data the tar reader is in
	err     error           // set once the tar has ended, with io.EOF or the reason
}

// openMember is the member whose header was read last: a failure before the tar stream
// passes dataEnd happened inside its data.
type openMember struct {
	name    string
	key     string
	dataEnd int64
	part    bool   // an image, caption or metadata member: part of the pending sample
	after   string // the member read whole before it
}

// tarSample collects the members of one key.
type tarSample struct {
	key      string
	image    []byte
	imageExt string

	hasCaption  bool
	caption     string
	truncated   bool
	captionSkip string

	meta     map[string]any
	metaJSON []byte
	metaSkip string

	skip string // a member-level problem; it wins over the completeness checks
}

func (r *tarReader) Next() (Sample, error) {
	if r.tr == nil && r.err == nil {
		r.start()
	}
	for len(r.ready) == 0 && r.err == nil {
		r.step()
	}
	if len(r.ready) > 0 {
		s := r.ready[0]
		r.ready = r.ready[1:]
		return s, nil
	}
	return Sample{}, r.err
}

// start looks at the first bytes: nothing at all is an empty shard, gzip's magic a
// compressed tar.
func (r *tarReader) start() {
	head := make([]byte, 2)
	n, err := io.ReadFull(r.src, head)
	head = head[:n]
	switch {
	case r.src.err != nil:
		r.err = r.readFailed("")
		return
	case n == 0 && err == io.EOF:
		r.err = io.EOF
		return
	}
	var stream io.Reader = io.MultiReader(bytes.NewReader(head), r.src)
	if bytes.Equal(head, gzipMagic) {
		zr, err := gzip.NewReader(stream)
		if err != nil {
			if r.src.err != nil {
				r.err = r.readFailed("")
			} else {
				r.err = fmt.Errorf("tar shard %s: gzip magic but not a gzip stream: %w", r.name, err)
			}
			return
		}
		r.gzipped, stream = true, zr
	}
	r.in = &countingReader{r: stream}
	r.tr = tar.NewReader(r.in)
}

var (
	gzipMagic      = []byte{0x1f, 0x8b}
	errNoEndMarker = errors.New("no end-of-archive marker")
)

// step reads one member and queues the sample it completes, if any.
func (r *tarReader) step() {
	hdr, err := r.tr.Next()
	if err != nil {
		switch {
		case errors.Is(err, io.EOF) && r.in.n == 0 && r.src.err == nil:
			r.err = io.EOF // a gzip of nothing: an empty shard, as a zero-byte one
		case errors.Is(err, io.EOF) && r.in.zeroTail >= tarBlockSize:
			r.err = io.EOF
		case errors.Is(err, io.EOF):
			// archive/tar takes a stream that stops exactly between two members for a
			// complete archive; only the zero blocks that end a tar say it is whole.
			r.fail(errNoEndMarker)
		default:
			r.fail(err)
		}
		r.flush()
		return
	}
	r.headers++
	key, ext, safe := splitMemberName(hdr.Name)
	part := hdr.Typeflag != tar.TypeDir && hdr.Typeflag != tar.TypeXGlobalHeader &&
		(!safe || imageExts[ext] || ext == textExt || ext == metaExt)
	r.cur = openMember{name: hdr.Name, key: key, dataEnd: r.in.n + blockAligned(hdr.Size), part: part, after: r.last}
	if !part {
		r.last = hdr.Name
		return
	}
	if r.pending != nil && r.pending.key != key {
		r.flush()
	}
	if r.pending == nil {
		r.pending = &tarSample{key: key}
		if r.seen[key] {
			r.pending.skipFor(SkipDuplicateKey)
		}
		r.seen[key] = true
	}
	if !safe {
		r.pending.skipFor(SkipUnsafePath)
	} else if err := r.readMember(r.pending, hdr, ext); err != nil {
		r.fail(err)
		r.flush()
		return
	}
	r.last = hdr.Name
}

func blockAligned(n int64) int64 { return (n + tarBlockSize - 1) / tarBlockSize * tarBlockSize }

func (r *tarReader) flush() {
	if r.pending != nil {
		r.ready = append(r.ready, r.pending.sample())
		r.pending = nil
	}
}

func (r *tarReader) Close() error { return nil }

// fail ends the shard on a tar or gzip error: a read that failed at the source, a stream
// that never was a tar, or damage after the samples before it.
func (r *tarReader) fail(err error) {
	inMember := r.cur.name != "" && r.in.n < r.cur.dataEnd
	member, after := "", r.last
	if inMember {
		member, after = r.cur.name, r.cur.after
	}
	switch {
	case r.src.err != nil:
		r.err = r.readFailed(member)
		return
	case r.headers == 0:
		r.err = fmt.Errorf("tar shard %s: not a tar archive (corrupt at the start): %w", r.name, err)
		return
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	if inMember && r.cur.part && r.pending != nil && r.pending.key == r.cur.key {
		// The shard ends inside this sample: what it read is unusable, but reported.
		r.pending.skip = SkipTruncatedMember
	}
	d := &DamageError{Shard: r.name, Err: err, ShardDamage: ShardDamage{
		TruncatedAt: r.in.n, Member: member, After: after, Reason: damageReason(err), Detail: err.Error()}}
	r.err = d
}

func damageReason(err error) string {
	var flateErr flate.CorruptInputError
	switch {
	case errors.As(err, &flateErr), errors.Is(err, gzip.ErrChecksum), errors.Is(err, gzip.ErrHeader):
		return DamageBadGzip
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, errNoEndMarker):
		return DamageTruncated
	}
	return DamageBadHeader
}

// readFailed is the error of a read that failed at the source: not damage, whatever the
// tar reader made of the missing bytes.
func (r *tarReader) readFailed(member string) error {
	where := ""
	if member != "" {
		where = fmt.Sprintf(" in member %q", member)
	} else if r.last != "" {
		where = fmt.Sprintf(" after member %q", r.last)
	}
	return fmt.Errorf("tar shard %s: reading the shard failed%s, %d bytes in: %w", r.name, where, r.src.n, r.src.err)
}

// readMember adds one member's data to s. It returns an error only when the tar itself
// fails; a member that breaks a limit marks the sample as skipped.
func (r *tarReader) readMember(s *tarSample, hdr *tar.Header, ext string) error {
	if hdr.Typeflag != tar.TypeReg { // archive/tar reports old-style TypeRegA as TypeReg
		s.skipFor(SkipUnsupportedMember)
		return nil
	}
	switch {
	case imageExts[ext]:
		if s.image != nil {
			return nil // a second image for one key: the first one is the sample's
		}
		if hdr.Size > r.lim.MaxMemberBytes {
			s.skipFor(SkipMemberTooLarge)
			return nil
		}
		data, err := readAllSized(r.tr, hdr.Size)
		if err != nil {
			return err
		}
		s.image, s.imageExt = data, ext
	case ext == textExt:
		if s.hasCaption {
			return nil
		}
		if hdr.Size > r.lim.MaxMemberBytes {
			s.skipFor(SkipMemberTooLarge)
			return nil
		}
		// Read a few bytes past the limit to tell a rune cut by the limit from a bad one;
		// the rest of the member is skipped by the next tar.Next.
		raw, err := readAllSized(io.LimitReader(r.tr, int64(r.lim.MaxCaptionBytes+utf8.UTFMax)), min(hdr.Size, int64(r.lim.MaxCaptionBytes+utf8.UTFMax)))
		if err != nil {
			return err
		}
		s.hasCaption = true
		s.caption, s.truncated, s.captionSkip = cleanCaption(raw, r.lim.MaxCaptionBytes)
	case ext == metaExt:
		if s.meta != nil || s.metaSkip != "" {
			return nil
		}
		if hdr.Size > r.lim.MaxMetadataBytes {
			s.skipFor(SkipMemberTooLarge)
			return nil
		}
		data, err := readAllSized(r.tr, hdr.Size)
		if err != nil {
			return err
		}
		// The JSON is kept byte for byte as a text column, so it must be UTF-8 as well.
		if err := json.Unmarshal(data, &s.meta); err != nil || s.meta == nil || !utf8.Valid(data) {
			s.meta, s.metaSkip = nil, SkipBadMetadata
		} else {
			s.metaJSON = data
		}
	}
	return nil
}

func (s *tarSample) skipFor(reason string) {
	if s.skip == "" {
		s.skip = reason
	}
}

func (s *tarSample) sample() Sample {
	out := Sample{
		Key: s.key, Image: s.image, ImageExt: s.imageExt,
		Caption: s.caption, CaptionTruncated: s.truncated, CaptionSource: SourceWeb,
		Meta: s.meta, MetaJSON: s.metaJSON,
	}
	if s.hasCaption && s.captionSkip == "" {
		out.Captions = []string{s.caption}
	}
	if s.meta != nil {
		out.URL, _ = s.meta["url"].(string)
		out.Width = metaInt(s.meta, "width")
		out.Height = metaInt(s.meta, "height")
	}
	switch {
	case s.skip != "":
		out.SkipReason = s.skip
	case s.image == nil:
		out.SkipReason = SkipMissingImage
	case !s.hasCaption:
		out.SkipReason = SkipMissingCaption
	case s.captionSkip != "":
		out.SkipReason = s.captionSkip
	case s.metaSkip != "":
		out.SkipReason = s.metaSkip
	}
	return out
}

// metaInt reads a non-negative integer field of KEY.json (img2dataset writes width and
// height as JSON numbers); anything else reads as 0, "unknown".
func metaInt(meta map[string]any, field string) int {
	f, ok := meta[field].(float64)
	if !ok || f < 0 || f > 1<<31-1 || f != float64(int(f)) {
		return 0
	}
	return int(f)
}

// splitMemberName splits a member name into its key and lower-cased extension: the key is
// everything before the last dot of the name, so keys may hold dots and folders
// ("a/b.c.jpg" has key "a/b.c"). A name that is absolute, climbs with "..", or is not
// UTF-8 is unsafe: a key is later used to name things, and must not point outside. Unsafe
// names are split all the same, so the members of one unsafe key are reported together.
func splitMemberName(name string) (key, ext string, safe bool) {
	name = strings.TrimPrefix(name, "./")
	safe = safeName(name)
	if safe {
		name = path.Clean(name)
	}
	dot := strings.LastIndexByte(name, '.')
	if dot <= strings.LastIndexByte(name, '/')+1 || dot == len(name)-1 {
		return name, "", safe
	}
	return name[:dot], strings.ToLower(name[dot+1:]), safe
}

// safeName reports whether a member name or key stays inside the folder it is read into.
func safeName(name string) bool {
	if name == "" || !utf8.ValidString(name) || strings.ContainsAny(name, "\\\x00") || path.IsAbs(name) {
		return false
	}
	for _, elem := range strings.Split(name, "/") {
		if elem == ".." {
			return false
		}
	}
	return true
}

// readAllSized reads exactly size bytes, the size a tar header declared, so a lying header
// cannot make it allocate more than the member limit allowed.
func readAllSized(r io.Reader, size int64) ([]byte, error) {
	buf := make([]byte, size)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, err
	}
	return buf, nil
}

const tarBlockSize = 512

// sourceReader counts the bytes read from the store and keeps the first error other than
// io.EOF it gave: a failed read, which must not be mistaken for a damaged shard.
type sourceReader struct {
	r   io.Reader
	n   int64
	err error
}

func (s *sourceReader) Read(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	n, err := s.r.Read(p)
	s.n += int64(n)
	if err != nil && err != io.EOF {
		s.err = err
	}
	return n, err
}

// countingReader counts the bytes read, to say where a shard broke, and how many zero
// bytes ended what was read, to tell the end-of-archive marker from a cut.
type countingReader struct {
	r        io.Reader
	n        int64
	zeroTail int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	i := n
	for i > 0 && p[i-1] == 0 {
		i--
	}
	if i == 0 {
		c.zeroTail += int64(n)
	} else {
		c.zeroTail = int64(n - i)
	}
	return n, err
}
