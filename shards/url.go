package shards

import (
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"strings"
)

// The schemes a URL can have. A plain path parses as SchemeFile.
const (
	SchemeS3   = "s3"
	SchemeFile = "file"
)

// URL names one object or one prefix of objects, on S3 or on local disk. Every command takes
// storage locations in one syntax, parsed by ParseURL:
//
//	s3://bucket/prefix/shard-00001.tar
//	file:///abs/path/shard-00001.tar
//	relative/or/absolute/path/shard-00001.tar
//
// S3 keys are taken literally (no percent-decoding, no cleaning); local paths are cleaned. A
// trailing slash is kept on both, because "prefix/" and "prefix" list different objects.
type URL struct {
	Scheme string // SchemeS3 or SchemeFile
	Bucket string // S3 only
	Path   string // S3: the object key, without a leading slash; file: a local path
}

// ParseURL parses s3://, file:// and plain-path locations. Brace ranges and glob characters
// are kept as written; Expand turns such a pattern into URLs.
func ParseURL(s string) (URL, error) {
	if s == "" {
		return URL{}, errors.New("parse storage URL: empty")
	}
	if strings.ContainsRune(s, 0) {
		return URL{}, fmt.Errorf("parse storage URL %q: contains a NUL byte", s)
	}
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok || strings.ContainsAny(scheme, "/.") {
		if strings.HasPrefix(strings.ToLower(s), "s3:") {
			return URL{}, fmt.Errorf("parse storage URL %q: S3 locations are written s3://bucket/key", s)
		}
		return URL{Scheme: SchemeFile, Path: cleanLocal(s)}, nil
	}
	switch strings.ToLower(scheme) {
	case SchemeS3:
		bucket, key, _ := strings.Cut(rest, "/")
		if bucket == "" {
			return URL{}, fmt.Errorf("parse storage URL %q: no bucket", s)
		}
		if strings.ContainsAny(bucket, " \t\r\n\\") {
			return URL{}, fmt.Errorf("parse storage URL %q: invalid bucket name %q", s, bucket)
		}
		return URL{Scheme: SchemeS3, Bucket: bucket, Path: key}, nil
	case SchemeFile:
		host, p, _ := strings.Cut(rest, "/")
		if host != "" && host != "localhost" {
			return URL{}, fmt.Errorf("parse storage URL %q: file URLs name local paths (file:///abs/path), not host %q", s, host)
		}
		return URL{Scheme: SchemeFile, Path: cleanLocal("/" + p)}, nil
	default:
		return URL{}, fmt.Errorf("parse storage URL %q: unsupported scheme %q (want s3://, file:// or a plain path)", s, scheme)
	}
}

func cleanLocal(p string) string {
	dir := strings.HasSuffix(p, "/")
	p = filepath.Clean(p)
	if dir && p != "/" {
		p += "/"
	}
	return p
}

// String gives the form ParseURL reads back: s3://bucket/key for S3, the plain path for files.
func (u URL) String() string {
	if u.Scheme == SchemeS3 {
		return "s3://" + u.Bucket + "/" + u.Path
	}
	return u.Path
}

// IsZero reports whether u is the zero URL.
func (u URL) IsZero() bool { return u == URL{} }

// MarshalText writes the form ParseURL reads back, so a URL in a job or a state travels
// as the string a user would write.
func (u URL) MarshalText() ([]byte, error) { return []byte(u.String()), nil }

// UnmarshalText parses with ParseURL; empty text is the zero URL.
func (u *URL) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*u = URL{}
		return nil
	}
	v, err := ParseURL(string(b))
	if err != nil {
		return err
	}
	*u = v
	return nil
}

// Join appends path elements, like path.Join for keys and filepath.Join for local paths.
func (u URL) Join(elem ...string) URL {
	out := u
	if u.Scheme == SchemeS3 {
		parts := append([]string{strings.TrimSuffix(u.Path, "/")}, elem...)
		out.Path = strings.TrimPrefix(path.Join(parts...), "/")
		if out.Path == "." {
			out.Path = ""
		}
		return out
	}
	out.Path = filepath.Join(append([]string{u.Path}, elem...)...)
	return out
}

// Base is the last element of the path: the object's file name.
func (u URL) Base() string {
	p := strings.TrimSuffix(u.Path, "/")
	if u.Scheme == SchemeS3 {
		return path.Base(p)
	}
	return filepath.Base(p)
}

// Ext is the lower-cased extension of Base, with its dot (".tar", ".parquet"), or "".
func (u URL) Ext() string {
	return strings.ToLower(path.Ext(u.Base()))
}

// Stem is Base without its extension, or without both of ".tar.gz": the name outputs of
// a shard are derived from (OUT/<stem>.parquet, OUT/<stem>.stats.json).
func (u URL) Stem() string {
	b := u.Base()
	if strings.HasSuffix(strings.ToLower(b), ".tar.gz") {
		return b[:len(b)-len(".tar.gz")]
	}
	return strings.TrimSuffix(b, path.Ext(b))
}

// CleanedURL is where the cleaned Parquet of input shard goes under the output prefix out.
func CleanedURL(out, shard URL) URL { return OutputURL(out, shard, OutputParquet) }

// StatsURL is where the stats of input shard go under the output prefix out.
func StatsURL(out, shard URL) URL { return out.Join(shard.Stem() + ".stats.json") }
