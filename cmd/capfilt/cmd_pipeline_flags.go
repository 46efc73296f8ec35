package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/capfilt/capfilt/captioner"
	"github.com/capfilt/capfilt/coordinator"
	"github.com/capfilt/capfilt/pipeline"
	"github.com/capfilt/capfilt/shards"
	"github.com/capfilt/capfilt/workers"
)

// addPipelineCommands registers the distributed commands (root.go calls it).
func addPipelineCommands(a *app, root *cobra.Command) {
	root.AddCommand(newSubmitCommand(a), newStatusCommand(a), newRetryCommand(a), newWorkerCommand(a), newRunCommand(a),
		newBenchCommand(a), newSampleShardsCommand(a))
	for _, c := range root.Commands() {
		if c.Name() == "model" {
			c.AddCommand(newModelRandomCommand(a))
		}
	}
}

// DefaultNATSURL is where a NATS server listens by default.
const DefaultNATSURL = "nats://127.0.0.1:4222"

// addNATSFlags adds how to reach NATS.
func addNATSFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.String("nats", DefaultNATSURL, "NATS server URL(s), comma-separated; user:password@ or a token may go in the URL")
	f.String("nats-creds", "", "NATS credentials file (JWT and nkey seed)")
	f.String("nats-nkey", "", "NATS nkey seed file")
	f.String("nats-ca", "", "CA certificate file for NATS over TLS")
	f.String("nats-cert", "", "client certificate file for NATS mutual TLS")
	f.String("nats-key", "", "client key file for NATS mutual TLS")
}

// connectNATS connects to the NATS server of --nats. An unreachable server is a usage
// error: nothing was done.
func (a *app) connectNATS(cmd *cobra.Command) (*nats.Conn, jetstream.JetStream, error) {
	nc, js, err := pipeline.Connect(a.v.GetString("nats"), pipeline.ConnectOptions{Name: "capfilt " + cmd.Name(), Log: a.log,
		CredsFile: a.v.GetString("nats-creds"), NKeyFile: a.v.GetString("nats-nkey"), RootCA: a.v.GetString("nats-ca"),
		CertFile: a.v.GetString("nats-cert"), KeyFile: a.v.GetString("nats-key")})
	if err != nil {
		return nil, nil, usagef("%v", err)
	}
	return nc, js, nil
}

// connectQueue connects to NATS and opens the job queue; create makes it when missing.
func (a *app) connectQueue(cmd *cobra.Command, create bool) (*nats.Conn, *pipeline.Queue, error) {
	url := a.v.GetString("nats")
	nc, js, err := a.connectNATS(cmd)
	if err != nil {
		return nil, nil, err
	}
	q, err := pipeline.OpenQueue(cmd.Context(), js)
	if errors.Is(err, pipeline.ErrNoQueue) && create {
		q, err = pipeline.EnsureQueue(cmd.Context(), js, pipeline.QueueConfig{})
	}
	if err != nil {
		nc.Close()
		if errors.Is(err, pipeline.ErrNoQueue) || errors.Is(err, jetstream.ErrJetStreamNotEnabled) {
			return nil, nil, usagef("NATS at %s: %v", pipeline.RedactURL(url), err)
		}
		return nil, nil, fmt.Errorf("NATS at %s: %w", pipeline.RedactURL(url), err)
	}
	return nc, q, nil
}

// addStoreFlags adds the S3 settings (local paths need none).
func addStoreFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.String("s3-endpoint", "", "S3-compatible endpoint, e.g. http://minio:9000 (empty: AWS)")
	f.String("s3-region", "", "S3 region (default: from the AWS environment, else us-east-1)")
	f.Bool("s3-path-style", false, "address buckets as endpoint/bucket (MinIO and most self-hosted stores)")
}

func (a *app) store() shards.Store {
	return shards.OpenStore(shards.StoreConfig{S3Endpoint: a.v.GetString("s3-endpoint"), S3Region: a.v.GetString("s3-region"),
		S3PathStyle: a.v.GetBool("s3-path-style")})
}

// addRunFlags adds what decides a run's output: inputs, output, models, rule, generation.
func addRunFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringArray("input", nil, "input shards: a pattern with brace ranges or globs, e.g. 's3://b/laion/{00000..00999}.tar' (repeatable)")
	f.String("output", "", "output prefix: cleaned Parquet, stats and _manifest.json go under it")
	f.String("captioner-model", "", "captioner checkpoint (default: --model)")
	f.String("filter-model", "", "filter checkpoint (default: --model); the same file as the captioner shares its ViT pass")
	addRuleFlags(cmd)
	addGenerationFlags(cmd)
	f.String("mode", "nucleus", "decoding: nucleus, beam or greedy")
	f.Float64("top-p", 0.9, "nucleus: keep tokens until this much probability is covered")
	f.Int("top-k", 50, "nucleus: keep at most the k most likely tokens first (0: off)")
	f.Float64("temperature", 1, "nucleus: divide logits by this")
	f.Int("samples", 1, "synthetic captions per image")
	f.String("prompt", captioner.DefaultPrompt, "text the decoder starts from, stripped from the output")
	f.Int64("seed", 0, "seed of the nucleus sampler (with each image's key): a retried shard gets the same captions")
	f.String("image-column", "", "Parquet input: the image bytes column (default: detected)")
	f.String("caption-column", "", "Parquet input: the caption column (default: detected)")
	f.String("url-column", "", "Parquet input: the URL column (default: detected)")
	f.String("key-column", "", "Parquet input: the key column (default: detected, else the row number)")
	f.Int64("max-pixels", 0, "refuse images whose header declares more pixels (0: the default limit)")
	f.Bool("omit-images", false, "write captions and scores without the image bytes")
	f.Bool("with-rejected", false, "also write each image's rejected captions with their scores, for audit")
	// The queue is shared by every run on the server: these four set it for all of them.
	f.Duration("ack-wait", pipeline.DefaultAckWait, "queue: a job without a worker heartbeat for this long goes to another worker")
	f.Int("max-deliver", pipeline.DefaultMaxDeliver, "queue: attempts a shard gets before it is dead")
	f.String("retry-backoff", "5s,30s,2m,5m", "queue: waits before the 2nd, 3rd, ... attempt of a failed shard (the last repeats)")
	f.Duration("dedup-window", pipeline.DefaultDedupWindow, "queue: how long NATS drops a re-published job by its id")
}

func (a *app) queueConfig() (pipeline.QueueConfig, error) {
	c := pipeline.QueueConfig{AckWait: a.v.GetDuration("ack-wait"), MaxDeliver: a.v.GetInt("max-deliver"),
		DedupWindow: a.v.GetDuration("dedup-window")}
	if c.AckWait < time.Second {
		return c, usagef("ack-wait %v: at least 1s", c.AckWait)
	}
	if c.MaxDeliver < 1 {
		return c, usagef("max-deliver %d: at least 1", c.MaxDeliver)
	}
	for _, s := range strings.Split(a.v.GetString("retry-backoff"), ",") {
		d, err := time.ParseDuration(strings.TrimSpace(s))
		if err != nil || d < 0 {
			return c, usagef("retry-backoff %q: want durations like 5s,30s,2m", a.v.GetString("retry-backoff"))
		}
		c.Backoff = append(c.Backoff, d)
	}
	return c, nil
}

// runSettings reads the run's settings from the flags and checks what can be checked
// here: the inputs and output are checked by the coordinator.
func (a *app) runSettings(run string) (pipeline.RunSettings, error) {
	rs := pipeline.RunSettings{Run: run, Inputs: a.v.GetStringSlice("input"), Output: a.v.GetString("output"),
		Columns: shards.ParquetColumns{Image: a.v.GetString("image-column"), Caption: a.v.GetString("caption-column"),
			URL: a.v.GetString("url-column"), Key: a.v.GetString("key-column")},
		MaxPixels: a.v.GetInt64("max-pixels"), OmitImages: a.v.GetBool("omit-images"), WithRejected: a.v.GetBool("with-rejected"),
		Version: capfiltVersion()}
	if err := pipeline.ValidateRunName(run); err != nil {
		return rs, usagef("%v", err)
	}
	if len(rs.Inputs) == 0 {
		return rs, usagef("no input given (--input)")
	}
	if rs.Output == "" {
		return rs, usagef("no output given (--output)")
	}
	model := a.v.GetString("model")
	tok := a.v.GetString("tokenizer")
	for _, m := range []struct {
		flag string
		dst  *pipeline.ModelSpec
	}{{"captioner-model", &rs.Captioner}, {"filter-model", &rs.Filter}} {
		path := a.v.GetString(m.flag)
		if path == "" {
			path = model
		}
		if path == "" {
			return rs, usagef("no model given (--model, or --captioner-model and --filter-model)")
		}
		spec, err := checkModelSpec(path, tok)
		if err != nil {
			return rs, err
		}
		*m.dst = spec
	}
	gen, err := a.generationSettings(captioner.Mode(a.v.GetString("mode")))
	if err != nil {
		return rs, err
	}
	if rs.Generation, err = json.Marshal(gen); err != nil {
		return rs, err
	}
	rs.Seed = gen.Seed
	rule, err := a.acceptRule()
	if err != nil {
		return rs, err
	}
	rs.Rule = workers.RuleSpec(rule)
	return rs, nil
}

// checkModelSpec makes sure a checkpoint and its tokenizer are there, as absolute paths:
// workers read them from where the run's settings say.
func checkModelSpec(path, tok string) (pipeline.ModelSpec, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return pipeline.ModelSpec{}, usagef("model %s: %v", path, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return pipeline.ModelSpec{}, usagef("model %s: %v", path, errors.Unwrap(err))
	}
	spec := pipeline.ModelSpec{Path: abs}
	if tok != "" {
		if spec.Tokenizer, err = filepath.Abs(tok); err != nil {
			return spec, usagef("tokenizer %s: %v", tok, err)
		}
		if _, err := os.Stat(spec.Tokenizer); err != nil {
			return spec, usagef("tokenizer %s: %v", tok, errors.Unwrap(err))
		}
		return spec, nil
	}
	dir := abs
	if !fi.IsDir() {
		dir = filepath.Dir(abs)
	}
	for _, name := range []string{"vocab.txt", "tokenizer.json"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			return spec, nil
		}
	}
	return spec, usagef("no tokenizer beside model %s: give --tokenizer (a vocab.txt or tokenizer.json)", path)
}

// asUsage turns the coordinator's "what you asked cannot be done" into exit code 2.
func asUsage(err error) error {
	var inv *coordinator.InvalidError
	if errors.As(err, &inv) {
		return usagef("%v", inv.Err)
	}
	return err
}

var runNameUnsafe = regexp.MustCompile(`[^A-Za-z0-9_-]+`)

// defaultRunName names a run after its output folder, so rerunning the same command on a
// kept store dir resumes it.
func defaultRunName(output string) string {
	base := strings.TrimSuffix(output, "/")
	if i := strings.LastIndexAny(base, "/"); i >= 0 {
		base = base[i+1:]
	}
	name := strings.Trim(runNameUnsafe.ReplaceAllString(base, "-"), "-")
	if len(name) > 64 {
		name = name[:64]
	}
	if name == "" {
		return "run"
	}
	return name
}
