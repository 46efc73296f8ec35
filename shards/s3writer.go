package shards

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// Create starts an upload that S3 makes visible only on Close: an object smaller than one
// part goes up as a single PutObject at Close; a larger one as a multipart upload whose
// parts stream out while it is written (S3UploadConcurrency at a time) and that
// CompleteMultipartUpload publishes. Abort, or a failed Close, aborts the multipart
// upload so no parts are left behind (and billed).
func (s *S3Store) Create(ctx context.Context, u URL) (ObjectWriter, error) {
	if err := s.checkObject(u); err != nil {
		return nil, err
	}
	return &s3Writer{
		ctx:  ctx,
		s:    s,
		u:    u,
		sem:  make(chan struct{}, s.cfg.S3UploadConcurrency),
		free: make(chan []byte, s.cfg.S3UploadConcurrency),
	}, nil
}

type s3Writer struct {
	ctx  context.Context
	s    *S3Store
	u    URL
	buf  []byte        // the part being filled; it grows to S3PartSize, small objects stay small
	sem  chan struct{} // one token per part in flight
	free chan []byte   // part buffers to reuse

	uploadID string
	nextPart int32
	inFlight sync.WaitGroup

	mu    sync.Mutex
	parts []types.CompletedPart
	err   error // the first failed part

	done bool
}

func (w *s3Writer) failed() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

func (w *s3Writer) Write(p []byte) (int, error) {
	if w.done {
		return 0, fmt.Errorf("write %s: %w", w.u, errWriterDone)
	}
	written := 0
	for len(p) > 0 {
		if err := w.failed(); err != nil {
			return written, err
		}
		n := min(len(p), int(w.s.cfg.S3PartSize)-len(w.buf))
		w.buf = append(w.buf, p[:n]...)
		p, written = p[n:], written+n
		if len(w.buf) == int(w.s.cfg.S3PartSize) {
			if err := w.sendPart(); err != nil {
				return written, err
			}
		}
	}
	return written, nil
}

// sendPart uploads the full buffer as the next part, in the background.
func (w *s3Writer) sendPart() error {
	if w.uploadID == "" {
		out, err := w.s.client.CreateMultipartUpload(w.ctx, &s3.CreateMultipartUploadInput{
			Bucket: aws.String(w.u.Bucket), Key: aws.String(w.u.Path),
		})
		if err != nil {
			return w.s.s3Err(w.ctx, "create", w.u, err)
		}
		w.uploadID = aws.ToString(out.UploadId)
	}
	w.nextPart++
	part, data := w.nextPart, w.buf
	select {
	case w.sem <- struct{}{}:
	case <-w.ctx.Done():
		return fmt.Errorf("write %s: %w", w.u, w.ctx.Err())
	}
	w.inFlight.Add(1)
	go func() {
		defer w.inFlight.Done()
		defer func() { <-w.sem }()
		out, err := w.s.client.UploadPart(w.ctx, &s3.UploadPartInput{
			Bucket: aws.String(w.u.Bucket), Key: aws.String(w.u.Path),
			UploadId: aws.String(w.uploadID), PartNumber: aws.Int32(part),
			Body: bytes.NewReader(data), ContentLength: aws.Int64(int64(len(data))),
		})
		w.mu.Lock()
		if err != nil && w.err == nil {
			w.err = fmt.Errorf("upload part %d: %w", part, w.s.s3Err(w.ctx, "write", w.u, err))
		} else if err == nil {
			w.parts = append(w.parts, types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(part)})
		}
		w.mu.Unlock()
		select {
		case w.free <- data[:0]:
		default:
		}
	}()
	select {
	case w.buf = <-w.free:
	default:
		w.buf = make([]byte, 0, w.s.cfg.S3PartSize)
	}
	return nil
}

func (w *s3Writer) Close() error {
	if w.done {
		return fmt.Errorf("close %s: %w", w.u, errWriterDone)
	}
	w.done = true
	if w.uploadID == "" {
		_, err := w.s.client.PutObject(w.ctx, &s3.PutObjectInput{
			Bucket: aws.String(w.u.Bucket), Key: aws.String(w.u.Path),
			Body: bytes.NewReader(w.buf), ContentLength: aws.Int64(int64(len(w.buf))),
		})
		if err != nil {
			return w.s.s3Err(w.ctx, "publish", w.u, err)
		}
		return nil
	}
	var err error
	if len(w.buf) > 0 {
		err = w.sendPart()
	}
	w.inFlight.Wait()
	if err == nil {
		err = w.failed()
	}
	if err == nil {
		sort.Slice(w.parts, func(i, j int) bool { return *w.parts[i].PartNumber < *w.parts[j].PartNumber })
		_, err = w.s.client.CompleteMultipartUpload(w.ctx, &s3.CompleteMultipartUploadInput{
			Bucket: aws.String(w.u.Bucket), Key: aws.String(w.u.Path), UploadId: aws.String(w.uploadID),
			MultipartUpload: &types.CompletedMultipartUpload{Parts: w.parts},
		})
		if err != nil {
			err = w.s.s3Err(w.ctx, "publish", w.u, err)
		}
	}
	if err != nil {
		w.abortUpload()
		return err
	}
	return nil
}

func (w *s3Writer) Abort() error {
	if w.done {
		return nil
	}
	w.done = true
	w.inFlight.Wait()
	return w.abortUpload()
}

// abortUpload runs even when the writer's context was cancelled (often the very reason
// for aborting), so the parts do not linger.
func (w *s3Writer) abortUpload() error {
	if w.uploadID == "" {
		return nil
	}
	ctx := context.WithoutCancel(w.ctx)
	_, err := w.s.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{
		Bucket: aws.String(w.u.Bucket), Key: aws.String(w.u.Path), UploadId: aws.String(w.uploadID),
	})
	if err != nil {
		return w.s.s3Err(ctx, "abort", w.u, err)
	}
	return nil
}
