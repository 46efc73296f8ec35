package shards

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
)

// Store reads and writes objects named by URLs: local disk or S3.
type Store interface {
	// Open streams an object from its start.
	Open(ctx context.Context, u URL) (io.ReadCloser, error)
	// OpenAt gives random access to an object; Parquet needs it to read the footer first.
	OpenAt(ctx context.Context, u URL) (ObjectReaderAt, error)
	// Create starts writing an object. Nothing is visible at u until Close returns nil;
	// Abort (or a failed Close) leaves whatever was at u before untouched.
	Create(ctx context.Context, u URL) (ObjectWriter, error)
	// CreateExclusive writes a small object only if nothing is at u, and returns
	// ErrExists otherwise: of two callers racing for one name, one wins. It is what
	// claims an output prefix for one run.
	CreateExclusive(ctx context.Context, u URL, data []byte) error
	// Stat describes one object.
	Stat(ctx context.Context, u URL) (ObjectInfo, error)
	// List returns every object whose name starts with prefix, in any folder below it,
	// sorted by name. A prefix with nothing under it gives an empty list.
	List(ctx context.Context, prefix URL) ([]ObjectInfo, error)
	// Delete removes an object; deleting one that does not exist is not an error.
	Delete(ctx context.Context, u URL) error
	// DiscardUnpublished removes what writers to u left unpublished when their process
	// died before Close or Abort (temporary files, open multipart uploads). It never
	// touches the published object. Only call it when no writer to u is alive.
	DiscardUnpublished(ctx context.Context, u URL) error
}

// ObjectInfo describes a stored object.
type ObjectInfo struct {
	URL     URL
	Size    int64
	ModTime time.Time
}

// ObjectWriter writes one object and publishes it atomically.
type ObjectWriter interface {
	io.Writer
	// Close publishes the object. After a failed Close nothing was published.
	Close() error
	// Abort discards everything written. It may be called after Close (it then does
	// nothing), so `defer w.Abort()` is the way to never leave half an object behind.
	Abort() error
}

// SizedReaderAt is random access to a fixed number of bytes; *bytes.Reader,
// *io.SectionReader and *os.File wrapped by OpenAt all are.
type SizedReaderAt interface {
	io.ReaderAt
	Size() int64
}

// ObjectReaderAt is random access to a stored object.
type ObjectReaderAt interface {
	SizedReaderAt
	io.Closer
}

// Errors a Store wraps, with the URL, so callers can tell a missing input from a broken one.
var (
	ErrNotFound       = errors.New("object not found")
	ErrBucketNotFound = errors.New("bucket not found")
	ErrAccessDenied   = errors.New("access denied")
	ErrExists         = errors.New("object already exists")
	errWriterDone     = errors.New("writer already closed or aborted")
)

// Transient reports whether err says the store could not serve a request for now: it was
// not reached (connection refused or reset, a timeout), it answered with a 5xx or a
// throttle after the SDK's own retries, or a read was cut mid-stream (ErrInterrupted).
// The same request may succeed later. A missing object, denied access, or bytes that are
// no shard are not transient: asking again gives the same answer.
func Transient(err error) bool {
	switch {
	case err == nil, errors.Is(err, ErrNotFound), errors.Is(err, ErrBucketNotFound), errors.Is(err, ErrAccessDenied),
		errors.Is(err, ErrExists):
		return false
	case errors.Is(err, ErrInterrupted):
		return true
	}
	var respErr *awshttp.ResponseError
	if errors.As(err, &respErr) && respErr.HTTPStatusCode() != 0 { // 0: no answer came
		code := respErr.HTTPStatusCode()
		return code >= 500 || code == 429 || code == 408
	}
	var netErr net.Error // net.OpError, url.Error and context.DeadlineExceeded are
	return errors.As(err, &netErr) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ETIMEDOUT)
}

// StoreConfig configures the stores OpenStore routes to. The zero value reads local files
// and AWS S3 with the standard credential chain (environment, shared config and
// credentials files, SSO, web identity, ECS and EC2 roles).
type StoreConfig struct {
	// S3Endpoint is the base URL of an S3-compatible store (MinIO, Ceph RGW, R2, ...),
	// e.g. "http://minio:9000". Empty means AWS.
	S3Endpoint string
	// S3Region overrides the region from the environment and shared config. When no
	// region is found anywhere, us-east-1 is used.
	S3Region string
	// S3PathStyle addresses buckets as endpoint/bucket/key instead of bucket.endpoint/key,
	// as MinIO and most self-hosted stores need.
	S3PathStyle bool
	// S3MaxAttempts is how many times one request is tried on 5xx, throttling and network
	// errors, backing off exponentially with jitter between tries (default 5).
	S3MaxAttempts int
	// S3MaxBackoff caps the wait between two tries (default 20s).
	S3MaxBackoff time.Duration
	// S3PartSize is the multipart upload part size (default 16 MiB, at least 5 MiB);
	// objects smaller than one part are sent in a single PutObject.
	S3PartSize int64
	// S3UploadConcurrency is how many parts of one object upload at once (default 4).
	// A writer buffers up to S3PartSize*(S3UploadConcurrency+1) bytes.
	S3UploadConcurrency int
	// S3Credentials replaces the standard chain, e.g. static keys in tests.
	S3Credentials aws.CredentialsProvider
}

const (
	defaultS3MaxAttempts       = 5
	defaultS3MaxBackoff        = 20 * time.Second
	defaultS3PartSize          = 16 << 20
	minS3PartSize              = 5 << 20 // S3's floor for every part but the last
	defaultS3UploadConcurrency = 4
)

func (c StoreConfig) withDefaults() StoreConfig {
	if c.S3MaxAttempts <= 0 {
		c.S3MaxAttempts = defaultS3MaxAttempts
	}
	if c.S3MaxBackoff <= 0 {
		c.S3MaxBackoff = defaultS3MaxBackoff
	}
	if c.S3PartSize <= 0 {
		c.S3PartSize = defaultS3PartSize
	}
	c.S3PartSize = max(c.S3PartSize, minS3PartSize)
	if c.S3UploadConcurrency <= 0 {
		c.S3UploadConcurrency = defaultS3UploadConcurrency
	}
	return c
}

// OpenStore returns a Store that serves every URL by its scheme: local paths from disk,
// s3:// from S3. The S3 client is made on the first s3:// URL, so a run on local folders
// needs no AWS configuration at all.
func OpenStore(cfg StoreConfig) Store {
	return &schemeRouter{cfg: cfg, local: LocalStore{}}
}

type schemeRouter struct {
	cfg   StoreConfig
	local LocalStore

	s3Once sync.Once
	s3     *S3Store
	s3Err  error
}

func (r *schemeRouter) pick(ctx context.Context, u URL) (Store, error) {
	switch u.Scheme {
	case SchemeFile:
		return r.local, nil
	case SchemeS3:
		r.s3Once.Do(func() { r.s3, r.s3Err = NewS3Store(ctx, r.cfg) })
		return r.s3, r.s3Err
	}
	return nil, fmt.Errorf("%s: no store for scheme %q", u, u.Scheme)
}

func (r *schemeRouter) Open(ctx context.Context, u URL) (io.ReadCloser, error) {
	s, err := r.pick(ctx, u)
	if err != nil {
		return nil, err
	}
	return s.Open(ctx, u)
}

func (r *schemeRouter) OpenAt(ctx context.Context, u URL) (ObjectReaderAt, error) {
	s, err := r.pick(ctx, u)
	if err != nil {
		return nil, err
	}
	return s.OpenAt(ctx, u)
}

func (r *schemeRouter) Create(ctx context.Context, u URL) (ObjectWriter, error) {
	s, err := r.pick(ctx, u)
	if err != nil {
		return nil, err
	}
	return s.Create(ctx, u)
}

func (r *schemeRouter) CreateExclusive(ctx context.Context, u URL, data []byte) error {
	s, err := r.pick(ctx, u)
	if err != nil {
		return err
	}
	return s.CreateExclusive(ctx, u, data)
}

func (r *schemeRouter) Stat(ctx context.Context, u URL) (ObjectInfo, error) {
	s, err := r.pick(ctx, u)
	if err != nil {
		return ObjectInfo{}, err
	}
	return s.Stat(ctx, u)
}

func (r *schemeRouter) List(ctx context.Context, prefix URL) ([]ObjectInfo, error) {
	s, err := r.pick(ctx, prefix)
	if err != nil {
		return nil, err
	}
	return s.List(ctx, prefix)
}

func (r *schemeRouter) Delete(ctx context.Context, u URL) error {
	s, err := r.pick(ctx, u)
	if err != nil {
		return err
	}
	return s.Delete(ctx, u)
}

func (r *schemeRouter) DiscardUnpublished(ctx context.Context, u URL) error {
	s, err := r.pick(ctx, u)
	if err != nil {
		return err
	}
	return s.DiscardUnpublished(ctx, u)
}
