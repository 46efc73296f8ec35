package shards

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"sort"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
)

// S3Store keeps objects in S3 or an S3-compatible store.
type S3Store struct {
	client *s3.Client
	cfg    StoreConfig
}

// NewS3Store makes the S3 client: credentials from cfg.S3Credentials or the standard
// chain, the standard retryer (exponential backoff with jitter on 5xx, throttling and
// connection errors) without its client-side retry quota, so that a fleet being
// throttled slows down instead of failing its jobs.
func NewS3Store(ctx context.Context, cfg StoreConfig) (*S3Store, error) {
	cfg = cfg.withDefaults()
	opts := []func(*config.LoadOptions) error{
		config.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = cfg.S3MaxAttempts
				o.MaxBackoff = cfg.S3MaxBackoff
				o.RateLimiter = ratelimit.None
			})
		}),
	}
	if cfg.S3Region != "" {
		opts = append(opts, config.WithRegion(cfg.S3Region))
	}
	if cfg.S3Credentials != nil {
		opts = append(opts, config.WithCredentialsProvider(cfg.S3Credentials))
	}
	if cfg.S3Endpoint != "" {
		if u, err := url.Parse(cfg.S3Endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("s3 endpoint %q: want a URL such as http://minio:9000", cfg.S3Endpoint)
		}
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("load AWS configuration: %w", err)
	}
	if awsCfg.Region == "" {
		awsCfg.Region = "us-east-1"
	}
	client := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		o.UsePathStyle = cfg.S3PathStyle
		if cfg.S3Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.S3Endpoint)
			// Many S3-compatible stores reject or mishandle the CRC checksums the SDK
			// now sends by default; ask for them only where the API requires them.
			o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
			o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
		}
	})
	return &S3Store{client: client, cfg: cfg}, nil
}

func (s *S3Store) check(u URL) error {
	if u.Scheme != SchemeS3 || u.Bucket == "" {
		return fmt.Errorf("%s: not an s3:// URL", u)
	}
	return nil
}

func (s *S3Store) checkObject(u URL) error {
	if err := s.check(u); err != nil {
		return err
	}
	if u.Path == "" || u.Path[len(u.Path)-1] == '/' {
		return fmt.Errorf("%s: names a prefix, not an object", u)
	}
	return nil
}

// s3Err turns an S3 failure into one of the package's errors, naming the URL. S3 answers
// HEAD requests without a body, so for those only the status code tells what went wrong.
func (s *S3Store) s3Err(ctx context.Context, op string, u URL, err error) error {
	status, code := s3Status(err)
	switch {
	case code == "NoSuchBucket":
		return fmt.Errorf("%s %s: %w (bucket %q)", op, u, ErrBucketNotFound, u.Bucket)
	case code == "NoSuchKey" || code == "NotFound" || status == 404:
		if s.bucketMissing(ctx, u) {
			return fmt.Errorf("%s %s: %w (bucket %q)", op, u, ErrBucketNotFound, u.Bucket)
		}
		return fmt.Errorf("%s %s: %w", op, u, ErrNotFound)
	case code == "AccessDenied" || code == "InvalidAccessKeyId" || code == "SignatureDoesNotMatch" ||
		code == "AllAccessDisabled" || code == "Forbidden" || status == 403:
		if code == "" {
			code = "403 Forbidden"
		}
		return fmt.Errorf("%s %s: %w (%s)", op, u, ErrAccessDenied, code)
	}
	return fmt.Errorf("%s %s: %w", op, u, err)
}

// s3Status is the HTTP status and S3 error code of a failed request (0 and "" when the
// request got no answer).
func s3Status(err error) (status int, code string) {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		code = apiErr.ErrorCode()
	}
	var respErr *awshttp.ResponseError
	if errors.As(err, &respErr) {
		status = respErr.HTTPStatusCode()
	}
	return status, code
}

// CreateExclusive sends a conditional PutObject (If-None-Match: *), which S3 refuses with
// 412 when the key exists, so the store itself decides which of two writers wins. A store
// that answers 501 Not Implemented to the condition gets a HEAD and a plain PUT instead:
// two writers within one round trip of each other can then both succeed. A store that
// ignores the header cannot be told apart here; callers that need to know read the
// object back.
func (s *S3Store) CreateExclusive(ctx context.Context, u URL, data []byte) error {
	if err := s.checkObject(u); err != nil {
		return err
	}
	put := func(conditional bool) error {
		in := &s3.PutObjectInput{Bucket: aws.String(u.Bucket), Key: aws.String(u.Path), Body: bytes.NewReader(data),
			ContentLength: aws.Int64(int64(len(data)))}
		if conditional {
			in.IfNoneMatch = aws.String("*")
		}
		_, err := s.client.PutObject(ctx, in)
		return err
	}
	for range 3 {
		err := put(true)
		status, code := s3Status(err)
		switch {
		case err == nil:
			return nil
		case status == 412 || code == "PreconditionFailed":
			return fmt.Errorf("create %s: %w", u, ErrExists)
		case status == 409 || code == "ConditionalRequestConflict":
			continue // another conditional write to the key was in flight; S3 asks to try again
		case status == 501 || code == "NotImplemented":
			if _, err := s.Stat(ctx, u); err == nil {
				return fmt.Errorf("create %s: %w", u, ErrExists)
			} else if !errors.Is(err, ErrNotFound) {
				return err
			}
			if err := put(false); err != nil {
				return s.s3Err(ctx, "create", u, err)
			}
			return nil
		default:
			return s.s3Err(ctx, "create", u, err)
		}
	}
	return fmt.Errorf("create %s: conditional writes to the key keep conflicting: %w", u, ErrExists)
}

// bucketMissing tells a missing bucket from a missing key after a bodiless 404.
func (s *S3Store) bucketMissing(ctx context.Context, u URL) bool {
	_, err := s.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(u.Bucket)})
	var respErr *awshttp.ResponseError
	return errors.As(err, &respErr) && respErr.HTTPStatusCode() == 404
}

func (s *S3Store) Stat(ctx context.Context, u URL) (ObjectInfo, error) {
	if err := s.checkObject(u); err != nil {
		return ObjectInfo{}, err
	}
	out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(u.Bucket), Key: aws.String(u.Path)})
	if err != nil {
		return ObjectInfo{}, s.s3Err(ctx, "stat", u, err)
	}
	return ObjectInfo{URL: u, Size: aws.ToInt64(out.ContentLength), ModTime: aws.ToTime(out.LastModified)}, nil
}

func (s *S3Store) List(ctx context.Context, prefix URL) ([]ObjectInfo, error) {
	if err := s.check(prefix); err != nil {
		return nil, err
	}
	var out []ObjectInfo
	pages := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{
		Bucket: aws.String(prefix.Bucket),
		Prefix: aws.String(prefix.Path),
	})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, s.s3Err(ctx, "list", prefix, err)
		}
		for _, o := range page.Contents {
			out = append(out, ObjectInfo{
				URL:     URL{Scheme: SchemeS3, Bucket: prefix.Bucket, Path: aws.ToString(o.Key)},
				Size:    aws.ToInt64(o.Size),
				ModTime: aws.ToTime(o.LastModified),
			})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].URL.Path < out[j].URL.Path })
	return out, nil
}

func (s *S3Store) Delete(ctx context.Context, u URL) error {
	if err := s.checkObject(u); err != nil {
		return err
	}
	_, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(u.Bucket), Key: aws.String(u.Path)})
	if err != nil {
		err = s.s3Err(ctx, "delete", u, err)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		return err
	}
	return nil
}

// DiscardUnpublished aborts the multipart uploads to u's key that no writer finished
// (a worker killed mid-upload); their parts would otherwise be stored, and billed,
// until a bucket lifecycle rule removes them.
func (s *S3Store) DiscardUnpublished(ctx context.Context, u URL) error {
	if err := s.checkObject(u); err != nil {
		return err
	}
	in := &s3.ListMultipartUploadsInput{Bucket: aws.String(u.Bucket), Prefix: aws.String(u.Path)}
	for {
		out, err := s.client.ListMultipartUploads(ctx, in)
		if err != nil {
			err = s.s3Err(ctx, "list uploads of", u, err)
			if errors.Is(err, ErrNotFound) {
				return nil // some S3-compatible stores answer "no such upload" for none
			}
			return err
		}
		for _, up := range out.Uploads {
			if aws.ToString(up.Key) != u.Path {
				continue
			}
			_, err := s.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{
				Bucket: aws.String(u.Bucket), Key: up.Key, UploadId: up.UploadId,
			})
			if err != nil && !errors.Is(s.s3Err(ctx, "abort", u, err), ErrNotFound) {
				return s.s3Err(ctx, "abort stale upload of", u, err)
			}
		}
		if !aws.ToBool(out.IsTruncated) {
			return nil
		}
		in.KeyMarker, in.UploadIdMarker = out.NextKeyMarker, out.NextUploadIdMarker
	}
}

// maxResumes bounds how often one streaming read reconnects after its body broke off.
const maxResumes = 5

// Open streams the object. The SDK retries failed requests but not a response body that
// breaks off midway (a reset connection halfway through a multi-GB shard), so the reader
// resumes from where it got to with a ranged GET, pinned to the object's ETag so that a
// replaced object is never spliced onto the old one.
func (s *S3Store) Open(ctx context.Context, u URL) (io.ReadCloser, error) {
	if err := s.checkObject(u); err != nil {
		return nil, err
	}
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(u.Bucket), Key: aws.String(u.Path)})
	if err != nil {
		return nil, s.s3Err(ctx, "open", u, err)
	}
	return &s3Reader{
		ctx: ctx, s: s, u: u, body: out.Body,
		size: aws.ToInt64(out.ContentLength), etag: aws.ToString(out.ETag),
	}, nil
}

type s3Reader struct {
	ctx     context.Context
	s       *S3Store
	u       URL
	body    io.ReadCloser
	size    int64
	etag    string
	off     int64
	resumes int
}

func (r *s3Reader) Read(p []byte) (int, error) {
	for {
		n, err := r.body.Read(p)
		r.off += int64(n)
		if err == nil || (err == io.EOF && r.off >= r.size) {
			return n, err
		}
		if r.ctx.Err() != nil {
			return n, fmt.Errorf("read %s at byte %d of %d: %w", r.u, r.off, r.size, r.ctx.Err())
		}
		if r.resumes >= maxResumes {
			// The object is whole in the store; only the connection gave out.
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return n, fmt.Errorf("read %s at byte %d of %d: %w after %d resumes: %w", r.u, r.off, r.size, ErrInterrupted, r.resumes, err)
		}
		r.resumes++
		r.body.Close()
		select {
		case <-time.After(time.Duration(r.resumes) * 100 * time.Millisecond):
		case <-r.ctx.Done():
		}
		out, gerr := r.s.client.GetObject(r.ctx, &s3.GetObjectInput{
			Bucket:  aws.String(r.u.Bucket),
			Key:     aws.String(r.u.Path),
			Range:   aws.String(fmt.Sprintf("bytes=%d-", r.off)),
			IfMatch: nonEmpty(r.etag),
		})
		if gerr != nil {
			r.body = io.NopCloser(eofReader{})
			gerr = r.s.s3Err(r.ctx, "reopen", r.u, gerr)
			if errors.Is(gerr, ErrNotFound) || errors.Is(gerr, ErrBucketNotFound) || errors.Is(gerr, ErrAccessDenied) {
				return n, fmt.Errorf("read %s at byte %d: resume after %v: %w", r.u, r.off, err, gerr)
			}
			return n, fmt.Errorf("read %s at byte %d: %w: resume after %v: %w", r.u, r.off, ErrInterrupted, err, gerr)
		}
		r.body = out.Body
		if n > 0 {
			return n, nil
		}
	}
}

func (r *s3Reader) Close() error { return r.body.Close() }

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.ErrUnexpectedEOF }

func nonEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return aws.String(s)
}

// OpenAt gives random access through ranged GETs, one per ReadAt, each pinned to the
// ETag seen when the object was opened. Parquet readers ask for the footer and then for
// column chunks in large buffered reads, so a shard costs a few dozen requests, and
// nothing is spooled to disk.
func (s *S3Store) OpenAt(ctx context.Context, u URL) (ObjectReaderAt, error) {
	if err := s.checkObject(u); err != nil {
		return nil, err
	}
	out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(u.Bucket), Key: aws.String(u.Path)})
	if err != nil {
		return nil, s.s3Err(ctx, "open", u, err)
	}
	return &s3ReaderAt{ctx: ctx, s: s, u: u, size: aws.ToInt64(out.ContentLength), etag: aws.ToString(out.ETag)}, nil
}

type s3ReaderAt struct {
	ctx  context.Context
	s    *S3Store
	u    URL
	size int64
	etag string
}

func (r *s3ReaderAt) Size() int64  { return r.size }
func (r *s3ReaderAt) Close() error { return nil }

func (r *s3ReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("read %s: negative offset %d", r.u, off)
	}
	if off >= r.size {
		return 0, io.EOF
	}
	want := min(int64(len(p)), r.size-off)
	var lastErr error
	for attempt := 0; attempt <= maxResumes; attempt++ {
		out, err := r.s.client.GetObject(r.ctx, &s3.GetObjectInput{
			Bucket:  aws.String(r.u.Bucket),
			Key:     aws.String(r.u.Path),
			Range:   aws.String(fmt.Sprintf("bytes=%d-%d", off, off+want-1)),
			IfMatch: nonEmpty(r.etag),
		})
		if err != nil {
			return 0, r.s.s3Err(r.ctx, "read", r.u, err)
		}
		n, err := io.ReadFull(out.Body, p[:want])
		out.Body.Close()
		if err == nil {
			if want < int64(len(p)) {
				return n, io.EOF
			}
			return n, nil
		}
		lastErr = err // the body broke off: ask again, the SDK already retried the request
		if r.ctx.Err() != nil {
			break
		}
	}
	if r.ctx.Err() != nil {
		return 0, fmt.Errorf("read %s bytes %d-%d: %w", r.u, off, off+want-1, lastErr)
	}
	return 0, fmt.Errorf("read %s bytes %d-%d: %w: %w", r.u, off, off+want-1, ErrInterrupted, lastErr)
}
