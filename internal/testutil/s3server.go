// Package testutil holds helpers shared by the tests of several capfilt packages.
package testutil

import (
	"bytes"
	"context"
	"encoding/xml"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// S3Server is a real S3-protocol server (gofakes3 over an in-memory backend) behind a real
// HTTP listener, so tests exercise the AWS SDK end to end: signing, XML, ranges, multipart.
//
// gofakes3 does not check signatures or permissions and ignores If-Match on GET; tests
// that need a 403 or a failing server use Intercept to answer requests themselves.
type S3Server struct {
	Endpoint        string // http://127.0.0.1:PORT, for path-style addressing
	Region          string
	AccessKeyID     string
	SecretAccessKey string

	backend *s3mem.Backend
	handler http.Handler
	srv     *httptest.Server
	mu      sync.Mutex
	hook    func(w http.ResponseWriter, r *http.Request) bool
}

// StartS3 starts a server with the given buckets, stopped when the test ends.
func StartS3(t testing.TB, buckets ...string) *S3Server {
	t.Helper()
	backend := s3mem.New()
	for _, b := range buckets {
		if err := backend.CreateBucket(b); err != nil {
			t.Fatalf("create bucket %q: %v", b, err)
		}
	}
	s := &S3Server{
		Region:          "us-east-1",
		AccessKeyID:     "capfilt-test-key",
		SecretAccessKey: "capfilt-test-secret",
		backend:         backend,
	}
	fake := gofakes3.New(backend).Server()
	s.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		hook := s.hook
		s.mu.Unlock()
		if hook != nil && hook(w, r) {
			return
		}
		fake.ServeHTTP(w, r)
	})
	s.srv = httptest.NewServer(s.handler)
	t.Cleanup(func() { s.Stop() })
	s.Endpoint = s.srv.URL
	return s
}

// Stop shuts the server down as an outage would: open connections are cut and new ones
// refused. The objects stay; Restart serves them again on the same address.
func (s *S3Server) Stop() {
	s.mu.Lock()
	srv := s.srv
	s.srv = nil
	s.mu.Unlock()
	if srv != nil {
		srv.CloseClientConnections()
		srv.Close()
	}
}

// Restart serves the same objects again at Endpoint after Stop.
func (s *S3Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	ln, err := net.Listen("tcp", strings.TrimPrefix(s.Endpoint, "http://"))
	if err != nil {
		t.Fatalf("restart S3 server on %s: %v", s.Endpoint, err)
	}
	srv := httptest.NewUnstartedServer(s.handler)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	s.mu.Lock()
	s.srv = srv
	s.mu.Unlock()
}

// Credentials are the static keys the server expects; pass them to the SDK through its
// config options so that no test depends on the developer's AWS environment.
func (s *S3Server) Credentials() aws.CredentialsProvider {
	return credentials.NewStaticCredentialsProvider(s.AccessKeyID, s.SecretAccessKey, "")
}

// Client is a plain SDK client for the server, for tests to set up and inspect buckets.
func (s *S3Server) Client() *s3.Client {
	return s3.New(s3.Options{
		Region:       s.Region,
		BaseEndpoint: aws.String(s.Endpoint),
		UsePathStyle: true,
		Credentials:  s.Credentials(),
	})
}

// Intercept installs a hook that sees every request before the fake does; when it
// returns true it has answered the request itself. nil removes the hook.
func (s *S3Server) Intercept(hook func(w http.ResponseWriter, r *http.Request) bool) {
	s.mu.Lock()
	s.hook = hook
	s.mu.Unlock()
}

// Put stores an object directly in the backend.
func (s *S3Server) Put(t testing.TB, bucket, key string, data []byte) {
	t.Helper()
	if _, err := s.backend.PutObject(bucket, key, map[string]string{}, bytes.NewReader(data), int64(len(data)), nil); err != nil {
		t.Fatalf("put s3://%s/%s: %v", bucket, key, err)
	}
}

// Get reads an object directly from the backend; ok is false when it does not exist.
func (s *S3Server) Get(t testing.TB, bucket, key string) (data []byte, ok bool) {
	t.Helper()
	obj, err := s.backend.GetObject(bucket, key, nil)
	if err != nil {
		return nil, false
	}
	defer obj.Contents.Close()
	data, err = io.ReadAll(obj.Contents)
	if err != nil {
		t.Fatalf("get s3://%s/%s: %v", bucket, key, err)
	}
	return data, true
}

// MultipartUploads lists the keys of the multipart uploads started and not yet
// completed or aborted in bucket.
func (s *S3Server) MultipartUploads(t testing.TB, bucket string) []string {
	t.Helper()
	out, err := s.Client().ListMultipartUploads(context.Background(), &s3.ListMultipartUploadsInput{Bucket: aws.String(bucket)})
	if err != nil {
		t.Fatalf("list multipart uploads in %q: %v", bucket, err)
	}
	var keys []string
	for _, u := range out.Uploads {
		keys = append(keys, aws.ToString(u.Key))
	}
	return keys
}

// WriteS3Error answers a request the way S3 reports a failure: status and an XML body
// with the error code (HEAD responses carry no body, as on S3).
func WriteS3Error(w http.ResponseWriter, r *http.Request, status int, code, message string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	if r.Method == http.MethodHead {
		return
	}
	body, _ := xml.Marshal(struct {
		XMLName xml.Name `xml:"Error"`
		Code    string
		Message string
	}{Code: code, Message: message})
	w.Write(append([]byte(xml.Header), body...))
}
