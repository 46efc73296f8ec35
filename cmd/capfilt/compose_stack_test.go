package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"

	"github.com/capfilt/capfilt/coordinator"
	"github.com/capfilt/capfilt/internal/testutil"
	"github.com/capfilt/capfilt/internal/testutil/pipelinetest"
	"github.com/capfilt/capfilt/shards"
	"github.com/capfilt/capfilt/workers"
)

// composeSite stands in for Docker on this machine: each capfilt service runs as its own
// process with only its compose environment, named volumes are folders, and the
// addresses Docker's network would give (nats, minio) are those of an embedded NATS
// server and the in-process S3 server. There is no GPU here, so the device is cpu.
type composeSite struct {
	t         *testing.T
	dir       string
	overrides map[string]string
}

// mounts maps a service's container paths to the folders standing in for its volumes.
func (st *composeSite) mounts(s composeService) map[string]string {
	m := map[string]string{}
	for _, v := range s.Volumes {
		f := strings.Split(v, ":")
		if len(f) < 2 {
			st.t.Fatalf("volume %q: want SOURCE:TARGET", v)
		}
		src := f[0]
		if !filepath.IsAbs(src) && !strings.HasPrefix(src, ".") {
			src = filepath.Join(st.dir, "volumes", src)
		}
		if err := os.MkdirAll(src, 0o755); err != nil {
			st.t.Fatal(err)
		}
		m[f[1]] = src
	}
	return m
}

func rewritePaths(s string, mounts map[string]string) string {
	for target, src := range mounts {
		if s == target || strings.HasPrefix(s, target+"/") {
			return src + strings.TrimPrefix(s, target)
		}
	}
	return s
}

// process is the service's command line as a process of this test binary (TestMain runs
// it as capfilt), with the service's environment and nothing of this one's.
func (st *composeSite) process(s composeService, extra ...string) *exec.Cmd {
	mounts := st.mounts(s)
	args := make([]string, len(s.Command))
	for i, a := range s.Command {
		args[i] = rewritePaths(a, mounts)
	}
	exe, err := os.Executable()
	if err != nil {
		st.t.Fatal(err)
	}
	c := exec.Command(exe, args...)
	c.Dir = st.dir
	c.Env = []string{"CAPFILT_MAIN=1", "PATH=" + os.Getenv("PATH"), "HOME=" + st.dir, "TMPDIR=" + os.TempDir()}
	for k, v := range s.Environment {
		if o, ok := st.overrides[k]; ok {
			v = o
		}
		c.Env = append(c.Env, k+"="+rewritePaths(v, mounts))
	}
	c.Env = append(c.Env, extra...)
	return c
}

func (st *composeSite) run(name string, s composeService) string {
	st.t.Helper()
	c := st.process(s)
	out, err := c.CombinedOutput()
	if err != nil {
		st.t.Fatalf("service %s (capfilt %s): %v\n%s", name, strings.Join(s.Command, " "), err, out)
	}
	return string(out)
}

// mcTarget reads the bucket and prefix an mc line of a service's script names
// ("store/$BUCKET/web"), with the service's environment.
func mcTarget(t *testing.T, s composeService, verb string) (line []string, bucket, prefix string) {
	t.Helper()
	for _, l := range strings.Split(strings.Join(s.Command, "\n"), "\n") {
		f := strings.Fields(l)
		if len(f) > 2 && f[0] == "mc" && f[1] == verb {
			dst := os.Expand(strings.Trim(f[len(f)-1], `"`), func(k string) string { return s.Environment[k] })
			alias, path, _ := strings.Cut(dst, "/")
			if alias != "store" {
				t.Fatalf("mc %s %s: want the store alias", verb, dst)
			}
			bucket, prefix, _ = strings.Cut(path, "/")
			return f, bucket, prefix
		}
	}
	t.Fatalf("no `mc %s` line in %v", verb, s.Command)
	return nil, "", ""
}

// s3Requests counts the requests an S3 server answers, by operation.
type s3Requests struct {
	mu     sync.Mutex
	counts map[string]int
	gets   map[string]int // object GETs by key
}

func (c *s3Requests) count(_ http.ResponseWriter, r *http.Request) bool {
	q := r.URL.Query()
	onBucket := !strings.Contains(strings.Trim(r.URL.Path, "/"), "/") // path-style: /bucket or /bucket/key
	op := r.Method + " object"
	switch {
	case q.Has("uploads") && r.Method == http.MethodPost:
		op = "POST create-multipart"
	case q.Has("uploads"):
		op = "GET list-multipart"
	case q.Has("uploadId"):
		op = r.Method + " multipart-part"
	case onBucket:
		op = r.Method + " bucket"
	}
	c.mu.Lock()
	c.counts[op]++
	if op == "GET object" {
		c.gets[strings.TrimPrefix(r.URL.Path, "/")]++
	}
	c.mu.Unlock()
	return false
}

// getsUnder counts the object GETs of keys under prefix (bucket/prefix/).
func (c *s3Requests) getsUnder(prefix string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for k, v := range c.gets {
		if strings.HasPrefix(k, prefix) {
			n += v
		}
	}
	return n
}

func (c *s3Requests) get(op string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.counts[op]
}

func (c *s3Requests) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	ops := make([]string, 0, len(c.counts))
	for op, n := range c.counts {
		ops = append(ops, fmt.Sprintf("%s %d", op, n))
	}
	sort.Strings(ops)
	return strings.Join(ops, ", ")
}

// countSamples counts the keys of WebDataset tars: a sample is the members sharing a key.
func countSamples(t *testing.T, tars []string) int {
	t.Helper()
	n := 0
	for _, p := range tars {
		fh, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		keys := map[string]bool{}
		tr := tar.NewReader(fh)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			keys[strings.SplitN(filepath.Base(h.Name), ".", 2)[0]] = true
		}
		fh.Close()
		n += len(keys)
	}
	return n
}

// waitHealthy runs the image's healthcheck until it gives the wanted answer; gone closes
// when the worker exits, which ends a wait for health at once.
func waitHealthy(t *testing.T, env []string, healthy bool, within time.Duration, gone <-chan struct{}) string {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		if healthy {
			select {
			case <-gone:
				t.Fatal("the worker exited before its metrics server answered")
			default:
			}
		}
		c := exec.Command("bash", filepath.Join(repoRoot, "deploy", "healthcheck.sh"))
		c.Env = env
		out, err := c.CombinedOutput()
		if (err == nil) == healthy {
			return string(out)
		}
		if time.Now().After(deadline) {
			t.Fatalf("healthcheck still says healthy=%v after %v: %v %s", !healthy, within, err, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// The compose file's demo, service by service, on this machine: the random model and the
// sample shards written into their volumes, the bucket made and filled as createbucket and
// demo-upload do, a worker with the worker service's settings, and the coordinator's
// submit --wait ending with every shard done; the image's healthcheck follows the worker.
func TestComposeDemoStackCleansShardsWithoutDocker(t *testing.T) {
	f, _ := loadCompose(t)
	svc := func(name string) composeService {
		s, ok := f.Services[name]
		if !ok {
			t.Fatalf("no %s service", name)
		}
		return s
	}
	_, bucket, _ := mcTarget(t, svc("createbucket"), "mb")
	s3 := testutil.StartS3(t, bucket)
	requests := &s3Requests{counts: map[string]int{}, gets: map[string]int{}}
	n := pipelinetest.StartNATS(t)
	port := freePort(t)
	st := &composeSite{t: t, dir: t.TempDir(), overrides: map[string]string{
		"CAPFILT_NATS": n.URL, "CAPFILT_S3_ENDPOINT": s3.Endpoint, "CAPFILT_DEVICE": "cpu",
		"CAPFILT_METRICS_ADDR": fmt.Sprintf("127.0.0.1:%d", port),
		"AWS_ACCESS_KEY_ID":    s3.AccessKeyID, "AWS_SECRET_ACCESS_KEY": s3.SecretAccessKey, "AWS_REGION": s3.Region,
	}}

	st.run("demo-model", svc("demo-model"))
	st.run("demo-shards", svc("demo-shards"))
	upload := svc("demo-upload")
	line, upBucket, prefix := mcTarget(t, upload, "mirror")
	src := rewritePaths(line[len(line)-2], st.mounts(upload))
	tars, _ := filepath.Glob(filepath.Join(src, "*.tar"))
	if upBucket != bucket || len(tars) == 0 {
		t.Fatalf("demo-upload mirrors %s (%d shards) into bucket %q; createbucket makes %q", src, len(tars), upBucket, bucket)
	}
	for _, p := range tars {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		s3.Put(t, bucket, prefix+"/"+filepath.Base(p), data)
	}

	s3.Intercept(requests.count)
	worker := st.process(svc("worker"))
	logf, err := os.Create(filepath.Join(st.dir, "worker.log"))
	if err != nil {
		t.Fatal(err)
	}
	worker.Stdout, worker.Stderr = logf, logf
	if err := worker.Start(); err != nil {
		t.Fatal(err)
	}
	var exitErr error
	gone := make(chan struct{})
	go func() { exitErr = worker.Wait(); close(gone) }()
	t.Cleanup(func() {
		worker.Process.Kill()
		if t.Failed() {
			data, _ := os.ReadFile(logf.Name())
			t.Logf("worker log:\n%s", data)
		}
	})
	waitHealthy(t, worker.Env, true, 30*time.Second, gone)

	coord := st.process(svc("coordinator"))
	var stdout, stderr bytes.Buffer
	coord.Stdout, coord.Stderr = &stdout, &stderr
	if err := coord.Start(); err != nil {
		t.Fatal(err)
	}
	stuck := time.AfterFunc(3*time.Minute, func() { coord.Process.Kill() })
	err = coord.Wait()
	stuck.Stop()
	out := stdout.String()
	if err != nil {
		t.Fatalf("coordinator (killed after 3 minutes if stuck): %v\nstdout:\n%s\nstderr:\n%s", err, out, stderr.String())
	}
	t.Logf("coordinator (capfilt %s) said:\n%s", strings.Join(svc("coordinator").Command, " "), out)
	samples := countSamples(t, tars)
	for _, want := range []string{fmt.Sprintf("%d shards: %d done, 0 dead", len(tars), len(tars)), fmt.Sprintf("images: %d read", samples)} {
		if !strings.Contains(out, want) {
			t.Errorf("coordinator output lacks %q:\n%s", want, out)
		}
	}
	outURL, err := shards.ParseURL(svc("coordinator").Environment["CAPFILT_OUTPUT"])
	if err != nil {
		t.Fatal(err)
	}
	data, ok := s3.Get(t, outURL.Bucket, outURL.Join(coordinator.ManifestName).Path)
	if !ok {
		t.Fatalf("no manifest under %s", outURL)
	}
	var m coordinator.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	if tot := m.Totals; !m.Complete || m.Done != len(tars) || tot.Read != int64(samples) || tot.Read != tot.Accepted+tot.Rejected+tot.Skipped {
		t.Errorf("manifest: complete %v, %d done, totals %+v", m.Complete, m.Done, m.Totals)
	}

	// docs/operations.md counts S3's requests per shard from the code; this is the count
	// of one run (tar shards, outputs under one part).
	t.Logf("S3 requests of the run, %d shards: %s", len(tars), requests)
	// Each shard is streamed in one GET; submit reads the first sample of the first one.
	if got := requests.getsUnder(bucket + "/" + prefix + "/"); got != len(tars)+1 {
		t.Errorf("%d object GETs of %d tar shards: want one per shard, and one at submit", got, len(tars))
	}
	if got := requests.get("POST create-multipart"); got != 0 {
		t.Errorf("%d multipart uploads for outputs under one part", got)
	}

	worker.Process.Signal(syscall.SIGTERM)
	select {
	case <-gone:
		if exitErr != nil {
			t.Fatalf("worker after SIGTERM: %v", exitErr)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("worker did not stop on SIGTERM")
	}
	if msg := waitHealthy(t, worker.Env, false, 5*time.Second, gone); !strings.Contains(msg, "nothing listens") {
		t.Errorf("healthcheck of a stopped worker said %q", msg)
	}
}

// descNames collects the series names a collector describes.
type descNames map[string]bool

func (d descNames) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc)
	go func() { c.Describe(ch); close(ch) }()
	for desc := range ch {
		if m := regexp.MustCompile(`fqName: "([^"]+)"`).FindStringSubmatch(desc.String()); m != nil {
			d[m[1]] = true
		}
	}
	return nil
}
func (d descNames) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		d.Register(c)
	}
}
func (d descNames) Unregister(prometheus.Collector) bool { return true }

// The dashboard and alerts read series the workers export, scraped where the worker
// services serve them; promtool, where installed, checks the config and runs the rules'
// unit tests.
func TestPrometheusReadsTheWorkersSeries(t *testing.T) {
	names := descNames{}
	if _, err := workers.NewMetrics(names); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(repoRoot, "deploy", "prometheus")
	rules, err := os.ReadFile(filepath.Join(dir, "capfilt-rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	used := regexp.MustCompile(`\bcapfilt_[a-z_]+`).FindAllString(string(rules), -1)
	if len(used) < 5 {
		t.Fatalf("the rules read only %v", used)
	}
	recorded := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s*- record: (\S+)`).FindAllStringSubmatch(string(rules), -1) {
		recorded[m[1]] = true
	}
	// The dashboard in docs/operations.md, its bookmark decoded.
	doc, err := os.ReadFile(filepath.Join(repoRoot, "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(doc)
	for _, line := range strings.Split(text, "\n") {
		if u, err := url.QueryUnescape(line); err == nil && strings.Contains(line, "/graph?") {
			text += "\n" + u
		}
	}
	for _, r := range regexp.MustCompile(`\bcapfilt:[a-z0-9_:]+`).FindAllString(text, -1) {
		if !recorded[r] {
			t.Errorf("docs/operations.md shows %s, which capfilt-rules.yml does not record", r)
		}
	}
	used = append(used, regexp.MustCompile(`\bcapfilt_[a-z_]+`).FindAllString(text, -1)...)
	for _, u := range used {
		base := u
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if trimmed := strings.TrimSuffix(u, suffix); trimmed != u && names[trimmed] {
				base = trimmed
			}
		}
		if !names[base] {
			t.Errorf("capfilt-rules.yml or docs/operations.md reads %s, which workers do not export", u)
		}
	}

	var cfg struct {
		ScrapeConfigs []struct {
			DNS []struct {
				Names []string `yaml:"names"`
				Port  int      `yaml:"port"`
			} `yaml:"dns_sd_configs"`
		} `yaml:"scrape_configs"`
	}
	data, err := os.ReadFile(filepath.Join(dir, "prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	scraped := map[string]bool{}
	for _, sc := range cfg.ScrapeConfigs {
		for _, d := range sc.DNS {
			for _, n := range d.Names {
				scraped[fmt.Sprintf("%s:%d", n, d.Port)] = true
			}
		}
	}
	f, _ := loadCompose(t)
	for name, s := range f.Services {
		if addr, ok := s.Environment["CAPFILT_METRICS_ADDR"]; ok && s.runsCapfilt() {
			_, port, _ := strings.Cut(addr, ":")
			if !scraped[name+":"+port] {
				t.Errorf("service %s serves metrics on %s; prometheus.yml does not scrape %s:%s", name, addr, name, port)
			}
		}
	}

	if _, err := exec.LookPath("promtool"); err != nil {
		t.Skip("NOT CHECKED: promtool is not installed (apt-get install prometheus): config syntax and rule tests")
	}
	for _, args := range [][]string{{"check", "config", "prometheus.yml"}, {"test", "rules", "capfilt-rules_test.yml"}} {
		c := exec.Command("promtool", args...)
		c.Dir = dir
		if out, err := c.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
