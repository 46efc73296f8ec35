package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/capfilt/capfilt/blip"
	"github.com/capfilt/capfilt/blip/tokenizer"
	"github.com/capfilt/capfilt/captioner"
	"github.com/capfilt/capfilt/filter"
	"github.com/capfilt/capfilt/pipeline/spec"
	"github.com/capfilt/capfilt/synth"
	"github.com/capfilt/capfilt/torch"
)

// The stages of `capfilt bench model`, in the order they run.
var benchModelStages = []string{"vit", "caption", "filter", "whole"}

func newBenchModelCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "model [--preset tiny|base] [--batch 8] [--images 8] [--stages vit,caption,filter,whole]",
		Short: "Images/s and peak memory of the model stage's parts, on a random BLIP",
		Long: `Runs each stage of the model work in a child process of its own, on a BLIP with
deterministic random weights (the generator of capfilt model random), so that each stage's
peak resident memory is its own:

  vit      the vision transformer on pixels [batch, 3, S, S]
  caption  nucleus captions (CapFilt's settings) from ready image embeddings
  filter   ITM + ITC of one web and one synthetic caption per image, from image embeddings
  whole    pixels → ViT → caption → filter, one ViT pass shared, as the workers do

For each it prints images/s over --bench-images images after --warmup batches, the peak resident
memory (VmHWM, reset after the weights and inputs are made) and that peak less the memory
in use before the stage started. testdata/ref/bench_eager.py runs the same work in plain
PyTorch and prints the same table; speeds compare only within one sitting.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o, err := benchModelOptionsFrom(cmd)
			if err != nil {
				return err
			}
			if o.runStage != "" {
				return runBenchModelStage(cmd.Context(), cmd.OutOrStdout(), o)
			}
			return benchModel(cmd.Context(), cmd.OutOrStdout(), o)
		},
	}
	f := cmd.Flags()
	f.String("bench-preset", "tiny", "model size: tiny or base")
	f.Int("batch", 8, "images per batch")
	f.Int("bench-images", 8, "images timed per stage")
	f.Int("warmup", 1, "untimed batches before the timed ones")
	f.String("stages", strings.Join(benchModelStages, ","), "stages to run, comma-separated")
	f.Uint64("bench-seed", 0, "seed of the weights, pixels and captions")
	f.Bool("json", false, "print JSON instead of text")
	f.String("device", "cpu", "device: cpu, cuda or cuda:N")
	f.String("dtype", "float32", "weights dtype: float32, or bfloat16/float16 on CUDA")
	f.Bool("buffer-cache", true, "keep freed large tensor buffers for reuse (the shim's default; false to measure without)")
	f.Int("bulk-threads", -1, "threads of ops over 2^18 elements (-1: the default, every CPU; 1: as small ops)")
	f.String("run-stage", "", "run one stage in this process (what the child processes do)")
	_ = f.MarkHidden("run-stage")
	perInvocation(f, "bench-preset", "batch", "bench-images", "warmup", "stages", "bench-seed", "json", "buffer-cache", "bulk-threads", "run-stage")
	return cmd
}

type benchModelOptions struct {
	preset                string
	cfg                   blip.Config
	batch, images, warmup int
	stages                []string
	seed                  uint64
	json                  bool
	runStage              string
	threads               int
	bufferCache           bool
	bulkThreads           int
	device                torch.Device
	dtype                 torch.DType
	passThroughArgs       []string
}

func benchModelOptionsFrom(cmd *cobra.Command) (benchModelOptions, error) {
	f := cmd.Flags()
	var o benchModelOptions
	o.preset, _ = f.GetString("bench-preset")
	o.batch, _ = f.GetInt("batch")
	o.images, _ = f.GetInt("bench-images")
	o.warmup, _ = f.GetInt("warmup")
	o.seed, _ = f.GetUint64("bench-seed")
	o.json, _ = f.GetBool("json")
	o.runStage, _ = f.GetString("run-stage")
	o.threads, _ = cmd.Flags().GetInt("threads")
	o.bufferCache, _ = f.GetBool("buffer-cache")
	o.bulkThreads, _ = f.GetInt("bulk-threads")
	dev, _ := f.GetString("device")
	dt, _ := f.GetString("dtype")
	var err error
	if o.device, err = torch.ParseDevice(dev); err != nil {
		return o, usagef("device: %v", err)
	}
	if o.dtype, err = torch.ParseDType(dt); err != nil {
		return o, usagef("dtype: %v", err)
	}
	if o.device.CUDA && !torch.CUDAAvailable() {
		return o, usagef("device %v is not available (capfilt version lists the devices)", o.device)
	}
	stages, _ := f.GetString("stages")
	switch o.preset {
	case "tiny", "base":
		o.cfg, _ = blip.Preset(o.preset)
	default:
		return o, usagef("preset %q: want tiny or base", o.preset)
	}
	if o.batch < 1 || o.images < 1 || o.warmup < 0 {
		return o, usagef("batch %d, images %d, warmup %d: batch and images must be at least 1, warmup at least 0", o.batch, o.images, o.warmup)
	}
	for _, s := range strings.Split(stages, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		if !isBenchStage(s) {
			return o, usagef("stages: unknown stage %q (want some of %s)", s, strings.Join(benchModelStages, ","))
		}
		o.stages = append(o.stages, s)
	}
	if len(o.stages) == 0 {
		return o, usagef("stages %q: no stage named", stages)
	}
	if o.runStage != "" && !isBenchStage(o.runStage) {
		return o, usagef("run-stage %q: unknown stage", o.runStage)
	}
	o.passThroughArgs = []string{"--bench-preset", o.preset, "--batch", strconv.Itoa(o.batch), "--bench-images", strconv.Itoa(o.images),
		"--warmup", strconv.Itoa(o.warmup), "--bench-seed", strconv.FormatUint(o.seed, 10), "--threads", strconv.Itoa(o.threads),
		"--buffer-cache=" + strconv.FormatBool(o.bufferCache), "--bulk-threads", strconv.Itoa(o.bulkThreads),
		"--device", dev, "--dtype", dt}
	return o, nil
}

func isBenchStage(s string) bool {
	for _, n := range benchModelStages {
		if n == s {
			return true
		}
	}
	return false
}

// benchStageResult is what one child process measured.
type benchStageResult struct {
	Stage        string  `json:"stage"`
	Preset       string  `json:"preset"`
	Batch        int     `json:"batch"`
	Images       int     `json:"images"`
	Seconds      float64 `json:"seconds"`
	CPUSeconds   float64 `json:"cpu_seconds"`
	ImagesPerSec float64 `json:"images_per_s"`
	SetupRSS     int64   `json:"setup_rss_bytes"` // weights and inputs, before the stage
	PeakRSS      int64   `json:"peak_rss_bytes"`  // high-water mark during the stage
	Impl         string  `json:"impl"`
	// The shim's large-buffer cache during the stage: buffers reused and freshly mapped.
	CacheHits   int64  `json:"cache_hits,omitempty"`
	CacheMisses int64  `json:"cache_misses,omitempty"`
	Device      string `json:"device"`
	DType       string `json:"dtype"`
	// On CUDA: the caching allocator's peak allocated bytes in the stage's process
	// (weights included) and the device's total.
	CUDAPeak  int64 `json:"cuda_peak_bytes,omitempty"`
	CUDATotal int64 `json:"cuda_total_bytes,omitempty"`
}

func benchModel(ctx context.Context, out io.Writer, o benchModelOptions) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	blas, _ := torch.BLASInfo()
	if !o.bufferCache {
		torch.SetBufferCache(false)
	}
	if o.bulkThreads >= 0 {
		torch.SetBulkThreads(o.bulkThreads)
	}
	if !o.json {
		fmt.Fprintf(out, "capfilt %s bench model: %s preset, random weights (seed %d), batch %d, %d images per stage after %d warm-up batch(es)\n",
			capfiltVersion(), o.preset, o.seed, o.batch, o.images, o.warmup)
		alloc := torch.HostAllocatorInfo()
		fmt.Fprintf(out, "libtorch %s, %d CPUs; threads: %d intra-op, %d for ops over 2^18 elements, %d BLAS; %d malloc arena(s) set by the shim, buffer cache %v\n",
			torch.Version(), runtime.NumCPU(), torch.NumThreads(), torch.BulkThreads(), torch.BLASThreads(), alloc.MallocArenas, alloc.BufferCache)
		fmt.Fprintf(out, "blas: %s\n", blas)
		attention := "explicit matmul-softmax-matmul (libtorch < 2)"
		if torch.FusedAttentionAvailable() {
			attention = "fused scaled_dot_product_attention"
		}
		fmt.Fprintf(out, "device %v, %v weights; attention: %s\n", o.device, o.dtype, attention)
		fmt.Fprintf(out, "%-8s %6s %8s %9s %8s %10s %11s %10s\n", "stage", "images", "seconds", "images/s", "CPU s", "peak RSS", "over setup", "setup RSS")
	}
	for _, stage := range o.stages {
		args := append([]string{"bench", "model", "--run-stage", stage}, o.passThroughArgs...)
		c := exec.CommandContext(ctx, exe, args...)
		c.Env = append(os.Environ(), testMainEnv+"=1") // lets a test binary act as capfilt
		c.Stderr = os.Stderr
		stdout, err := c.Output()
		if err != nil {
			return fmt.Errorf("bench model: stage %s: %w", stage, err)
		}
		var r benchStageResult
		if err := json.Unmarshal(lastLine(stdout), &r); err != nil {
			return fmt.Errorf("bench model: stage %s printed %q: %w", stage, stdout, err)
		}
		if o.json {
			line, _ := json.Marshal(r)
			fmt.Fprintf(out, "%s\n", line)
			continue
		}
		fmt.Fprintf(out, "%-8s %6d %8.2f %9.3f %8.1f %7.0f MB %8.0f MB %7.0f MB", r.Stage, r.Images, r.Seconds, r.ImagesPerSec,
			r.CPUSeconds, mb(r.PeakRSS), mb(r.PeakRSS-r.SetupRSS), mb(r.SetupRSS))
		if r.CUDATotal > 0 {
			fmt.Fprintf(out, "  CUDA peak %.0f of %.0f MB", mb(r.CUDAPeak), mb(r.CUDATotal))
		}
		fmt.Fprintln(out)
	}
	return nil
}

func mb(b int64) float64 { return float64(b) / 1e6 }

func lastLine(b []byte) []byte {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return []byte(lines[len(lines)-1])
}

// benchWork is one stage's model, tokenizer and inputs.
type benchWork struct {
	o        benchModelOptions
	model    *blip.Model
	cap      *captioner.Captioner
	scorer   *filter.Scorer
	tok      *tokenizer.Tokenizer
	pixels   *torch.Tensor // [batch, 3, S, S]
	image    *torch.Tensor // ViT output of pixels, for the caption and filter stages
	keys     []string
	web, syn []string // one web and one synthetic caption per image
}

func runBenchModelStage(ctx context.Context, out io.Writer, o benchModelOptions) error {
	if !o.bufferCache {
		torch.SetBufferCache(false)
	}
	if o.bulkThreads >= 0 {
		torch.SetBulkThreads(o.bulkThreads)
	}
	w, err := newBenchWork(o)
	if err != nil {
		return err
	}
	defer w.model.Close()
	if o.runStage == "caption" || o.runStage == "filter" {
		torch.NoGrad(func() { w.image = w.model.EncodeImage(w.pixels, false) })
		if err := w.image.Err(); err != nil {
			return err
		}
	}
	runtime.GC()
	debug.FreeOSMemory() // the weights' Go-side staging slices are garbage by now
	torch.ReleaseHostMemory()
	if err := torch.ResetHostPeak(); err != nil {
		return fmt.Errorf("bench model: cannot reset the peak RSS (needs Linux ≥ 4.0): %w", err)
	}
	setup, err := torch.ReadHostMemory()
	if err != nil {
		return err
	}
	cache0 := torch.HostAllocatorInfo().BufferCacheStats
	batches := (o.images + o.batch - 1) / o.batch
	var began time.Time
	var cpu0 float64
	images := 0
	for i := range o.warmup + batches {
		if i == o.warmup {
			began, cpu0 = time.Now(), cpuSeconds()
		}
		n := o.batch
		if i >= o.warmup {
			n = min(o.batch, o.images-images)
			images += n
		}
		if err := w.run(ctx, n); err != nil {
			return fmt.Errorf("bench model: stage %s: %w", o.runStage, err)
		}
	}
	secs := time.Since(began).Seconds()
	peak, err := torch.ReadHostMemory()
	if err != nil {
		return err
	}
	r := benchStageResult{Stage: o.runStage, Preset: o.preset, Batch: o.batch, Images: images, Seconds: secs, CPUSeconds: cpuSeconds() - cpu0,
		ImagesPerSec: float64(images) / secs, SetupRSS: setup.RSS, PeakRSS: peak.Peak, Impl: "capfilt"}
	cache := torch.HostAllocatorInfo().BufferCacheStats
	r.CacheHits, r.CacheMisses = cache.Hits-cache0.Hits, cache.Misses-cache0.Misses
	r.Device, r.DType = o.device.String(), o.dtype.String()
	if o.device.CUDA {
		if m, err := torch.CUDAMemoryStats(o.device.Index); err == nil {
			r.CUDAPeak, r.CUDATotal = m.PeakAllocated, m.Total
		}
	}
	line, _ := json.Marshal(r)
	_, err = fmt.Fprintf(out, "%s\n", line)
	return err
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

func newBenchWork(o benchModelOptions) (*benchWork, error) {
	m, err := blip.New(o.cfg, blip.Parts{Vision: true, TextEncoder: true, TextDecoder: true, ITC: true, ITM: true})
	if err != nil {
		return nil, err
	}
	if err := m.InitDeterministic(o.seed); err != nil {
		m.Close()
		return nil, err
	}
	if err := m.To(o.device, o.dtype); err != nil {
		m.Close()
		return nil, err
	}
	w := &benchWork{o: o, model: m}
	var vocab []string
	if w.tok, vocab, err = benchTokenizer(o); err != nil {
		m.Close()
		return nil, err
	}
	gen := spec.NucleusDefaults()
	gen.Seed = o.seed
	if w.cap, err = captioner.New(m, w.tok, gen); err != nil {
		m.Close()
		return nil, err
	}
	if w.scorer, err = filter.NewScorer(m, w.tok, filter.DefaultOptions()); err != nil {
		m.Close()
		return nil, err
	}
	side := int64(o.cfg.Vision.ImageSize)
	g := torch.NewGenerator(o.seed)
	w.pixels = torch.Randn(g, torch.Float32, torch.CPU, int64(o.batch), 3, side, side)
	g.Close()
	words := benchWords(vocab)
	synWords := gen.MaxLength - len(captioner.PromptIDs(w.tok, gen.Prompt)) // what the captioner writes at most
	for i := range o.batch {
		w.keys = append(w.keys, fmt.Sprintf("image-%05d", i))
		w.web = append(w.web, benchCaption(words, i, 20, 31))
		w.syn = append(w.syn, benchCaption(words, i, synWords, 7))
	}
	return w, w.pixels.Err()
}

// run does the stage's work on the first n images of the batch.
func (w *benchWork) run(ctx context.Context, n int) error {
	s := torch.NewScope()
	defer s.Close()
	var err error
	torch.NoGrad(func() {
		pixels := s.Ref(w.pixels).Narrow(0, 0, int64(n))
		keys := w.keys[:n]
		switch w.o.runStage {
		case "vit":
			err = w.model.EncodeImage(pixels, false).Err()
		case "caption":
			_, err = w.cap.CaptionImages(ctx, s.Ref(w.image).Narrow(0, 0, int64(n)), keys)
		case "filter":
			texts := make([][]string, n)
			for i := range texts {
				texts[i] = []string{w.web[i], w.syn[i]}
			}
			_, err = w.scorer.ScoreImages(ctx, s.Ref(w.image).Narrow(0, 0, int64(n)), texts)
		case "whole":
			img := w.model.EncodeImage(pixels, false)
			if err = img.Err(); err != nil {
				return
			}
			var caps [][]captioner.Caption
			if caps, err = w.cap.CaptionImages(ctx, img, keys); err != nil {
				return
			}
			texts := make([][]string, n)
			for i := range texts {
				texts[i] = []string{w.web[i]}
				for _, c := range caps[i] {
					texts[i] = append(texts[i], c.Text)
				}
			}
			_, err = w.scorer.ScoreImages(ctx, img, texts)
		}
		if err == nil && w.o.device.CUDA {
			err = torch.CUDASynchronize(w.o.device.Index) // the ViT stage's work is queued, not done
		}
	})
	return err
}

// benchTokenizer is a vocabulary of the model's size. tiny has its own; for base every id
// but BERT's special ones and "a picture of" (at bert-base-uncased's ids, so the prompt
// is the usual [DEC] 1037 3861 1997) is the word "w<id>", so any generated token decodes to
// one word that encodes back to it, as testdata/ref/bench_eager.py assumes.
func benchTokenizer(o benchModelOptions) (*tokenizer.Tokenizer, []string, error) {
	var vocab []string
	if o.preset == "tiny" {
		vocab = synth.TinyVocab()
	} else {
		vocab = make([]string, o.cfg.Text.VocabSize-2)
		for i := range vocab {
			vocab[i] = "w" + strconv.Itoa(i)
		}
		for id, tok := range map[int]string{0: "[PAD]", 100: "[UNK]", 101: "[CLS]", 102: "[SEP]", 103: "[MASK]", 1037: "a", 3861: "picture", 1997: "of"} {
			vocab[id] = tok
		}
	}
	tok, err := tokenizer.New(vocab, tokenizer.BertUncased)
	if err != nil {
		return nil, nil, err
	}
	if err := tok.SetDecEncIDs(o.cfg.Text.BosID, o.cfg.Text.EncID); err != nil {
		return nil, nil, err
	}
	return tok, vocab, nil
}

// benchWords are the vocabulary's plain lowercase words (no specials, no ## pieces).
func benchWords(vocab []string) []string {
	var out []string
	for _, w := range vocab {
		plain := w != ""
		for _, r := range w {
			plain = plain && (r >= 'a' && r <= 'z' || r >= '0' && r <= '9')
		}
		if plain {
			out = append(out, w)
		}
	}
	return out
}

// benchCaption is image i's caption of n words; bench_eager.py picks the same.
func benchCaption(words []string, i, n, stride int) string {
	parts := make([]string, n)
	for j := range parts {
		parts[j] = words[(i*stride+j*17+5)%len(words)]
	}
	return strings.Join(parts, " ")
}
