package testutil

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
)

func TestS3ServerSpeaksS3ToTheSDK(t *testing.T) {
	srv := StartS3(t, "bucket")
	ctx := context.Background()
	client := srv.Client()

	body := []byte("hello over real HTTP")
	if _, err := client.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String("bucket"), Key: aws.String("dir/a.txt"), Body: bytes.NewReader(body),
	}); err != nil {
		t.Fatalf("PutObject: %v", err)
	}
	got, ok := srv.Get(t, "bucket", "dir/a.txt")
	if !ok || !bytes.Equal(got, body) {
		t.Fatalf("backend holds %q (exists %v), want %q", got, ok, body)
	}

	srv.Put(t, "bucket", "dir/b.txt", []byte("0123456789"))
	out, err := client.GetObject(ctx, &s3.GetObjectInput{
		Bucket: aws.String("bucket"), Key: aws.String("dir/b.txt"), Range: aws.String("bytes=2-4"),
	})
	if err != nil {
		t.Fatalf("ranged GetObject: %v", err)
	}
	part, _ := io.ReadAll(out.Body)
	if string(part) != "234" {
		t.Fatalf("range 2-4 gave %q, want %q", part, "234")
	}

	if _, err := client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		Bucket: aws.String("bucket"), Key: aws.String("big"),
	}); err != nil {
		t.Fatalf("CreateMultipartUpload: %v", err)
	}
	if ups := srv.MultipartUploads(t, "bucket"); len(ups) != 1 || ups[0] != "big" {
		t.Fatalf("open uploads %v, want [big]", ups)
	}
	if _, ok := srv.Get(t, "bucket", "missing"); ok {
		t.Fatal("Get of a missing key reported it present")
	}
}

func TestS3ServerInterceptAnswersInsteadOfTheFake(t *testing.T) {
	srv := StartS3(t, "bucket")
	srv.Put(t, "bucket", "k", []byte("v"))
	srv.Intercept(func(w http.ResponseWriter, r *http.Request) bool {
		WriteS3Error(w, r, http.StatusForbidden, "AccessDenied", "no")
		return true
	})
	_, err := srv.Client().GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String("bucket"), Key: aws.String("k")})
	var apiErr smithy.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode() != "AccessDenied" {
		t.Fatalf("GetObject error %v, want AccessDenied", err)
	}

	srv.Intercept(nil)
	if _, err := srv.Client().GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String("bucket"), Key: aws.String("k")}); err != nil {
		t.Fatalf("GetObject after removing the hook: %v", err)
	}
}
