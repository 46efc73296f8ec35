package synth

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/capfilt/capfilt/blip/tokenizer"
)

// worldEntries are the files and folders a world is made of, the only ones Overwrite
// removes; world.json comes first so a half-removed world never reads as whole.
var worldEntries = []string{"world.json", "web", "annotated", "test", "vocab.txt", "model_config.json"}

// ErrWorldExists is what Generate returns (wrapped) when Out holds a world and
// Overwrite is not set.
var ErrWorldExists = errors.New("a world is already there")

// prepareOut makes out, refusing to write over a world unless overwrite is set.
func prepareOut(out string, overwrite bool) error {
	for _, name := range worldEntries {
		p := filepath.Join(out, name)
		if _, err := os.Lstat(p); errors.Is(err, fs.ErrNotExist) {
			continue
		} else if err != nil {
			return fmt.Errorf("world %s: %w", out, err)
		}
		if !overwrite {
			return fmt.Errorf("world %s: %s already exists: %w", out, p, ErrWorldExists)
		}
		if err := os.RemoveAll(p); err != nil {
			return fmt.Errorf("world %s: remove the old %s: %w", out, name, err)
		}
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return fmt.Errorf("world %s: %w", out, err)
	}
	return nil
}

// generator writes the sets of one world and keeps what they share: progress and the
// token check every caption passes.
type generator struct {
	cfg         WorldConfig
	tok         *tokenizer.Tokenizer
	done, total int
	maxTokens   int
}

func (g *generator) progress(set string, n int) {
	g.done += n
	if g.cfg.Progress != nil {
		g.cfg.Progress(Progress{Set: set, Done: g.done, Total: g.total})
	}
}

// checkCaption makes sure a caption tokenises without [UNK] and records its length:
// the world vocabulary promises both.
func (g *generator) checkCaption(where, caption string) error {
	ids := g.tok.Encode(caption)
	if slices.Contains(ids, g.tok.UnkID()) {
		return fmt.Errorf("%s: caption %q has a word outside the world vocabulary (%v)", where, caption, g.tok.Tokenize(caption))
	}
	g.maxTokens = max(g.maxTokens, len(ids))
	return nil
}

// renderAll renders and codes images in parallel; the bytes are the same in any order.
func (g *generator) renderAll(ctx context.Context, pics []planned) ([][]byte, error) {
	out := make([][]byte, len(pics))
	eg, ctx := errgroup.WithContext(ctx)
	eg.SetLimit(runtime.GOMAXPROCS(0))
	for i, p := range pics {
		eg.Go(func() error {
			if err := ctx.Err(); err != nil {
				return err
			}
			data, err := encodeImage(p.pic.Render(g.cfg.ImageSize), p.format, p.quality)
			out[i] = data
			return err
		})
	}
	return out, eg.Wait()
}

// webMeta is a web sample's KEY.json: img2dataset's keys, and the truth under "synth".
type webMeta struct {
	Key            string   `json:"key"`
	URL            string   `json:"url"`
	Caption        string   `json:"caption"`
	Status         string   `json:"status"`
	ErrorMessage   *string  `json:"error_message"`
	Width          int      `json:"width"`
	Height         int      `json:"height"`
	OriginalWidth  int      `json:"original_width"`
	OriginalHeight int      `json:"original_height"`
	Synth          WebTruth `json:"synth"`
}

func (g *generator) writeWeb(ctx context.Context, w *World) error {
	cfg := g.cfg
	dir := filepath.Join(cfg.Out, "web")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("world: %w", err)
	}
	pics := make([]planned, cfg.WebImages)
	for i := range pics {
		pics[i] = planImage(cfg.Seed, setWeb, i, cfg.JPEGShare)
	}
	kinds := assignKinds(cfg.WebImages, cfg.Noise, cfg.Incomplete, cfg.NoiseMix, captionRNG(cfg.Seed, setWeb, 1<<38))
	w.Counts = map[CaptionKind]int{}
	for start := 0; start < len(pics); start += cfg.PerShard {
		end := min(start+cfg.PerShard, len(pics))
		images, err := g.renderAll(ctx, pics[start:end])
		if err != nil {
			return fmt.Errorf("world: web images: %w", err)
		}
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for k, data := range images {
			i := start + k
			key := webKey(i, cfg.PerShard)
			t := webCaption(pics, i, kinds[i], cfg)
			if t.Caption == "" {
				return fmt.Errorf("world: web sample %s: no other image's caption is false of it", key)
			}
			if err := g.checkCaption("web sample "+key, t.Caption); err != nil {
				return err
			}
			if err := g.checkCaption("web sample "+key+" (clean)", t.CleanCaption); err != nil {
				return err
			}
			ext := pics[i].format
			meta, err := json.Marshal(webMeta{Key: key, URL: fmt.Sprintf("https://cdn.shop.example.invalid/media/%s.%s", key, ext),
				Caption: t.Caption, Status: "success", Width: cfg.ImageSize, Height: cfg.ImageSize,
				OriginalWidth: cfg.ImageSize, OriginalHeight: cfg.ImageSize, Synth: t})
			if err != nil {
				return fmt.Errorf("world: web sample %s: %w", key, err)
			}
			if err := writeMembers(tw, key, ext, data, t.Caption, meta); err != nil {
				return fmt.Errorf("world: web sample %s: %w", key, err)
			}
			t.Key = key
			w.web[key] = t
			w.webKeys = append(w.webKeys, key)
			w.Counts[t.Kind]++
		}
		if err := tw.Close(); err != nil {
			return fmt.Errorf("world: web shard: %w", err)
		}
		p := filepath.Join(dir, fmt.Sprintf("%05d.tar", len(w.WebShards)))
		if err := writeFileAtomic(p, buf.Bytes()); err != nil {
			return fmt.Errorf("world: %w", err)
		}
		w.WebShards = append(w.WebShards, p)
		g.progress("web", end-start)
	}
	w.WebPattern = filepath.Join(dir, "00000.tar")
	if n := len(w.WebShards); n > 1 {
		w.WebPattern = filepath.Join(dir, fmt.Sprintf("{00000..%05d}.tar", n-1))
	}
	return nil
}

// tarTime is every member's modification time, so a world's tars depend on its seed only.
var tarTime = time.Unix(0, 0).UTC()

// writeMembers writes one sample as img2dataset does: KEY.<ext>, KEY.txt, KEY.json.
func writeMembers(tw *tar.Writer, key, ext string, image []byte, caption string, meta []byte) error {
	for _, m := range []struct {
		name string
		data []byte
	}{{key + "." + ext, image}, {key + ".txt", []byte(caption)}, {key + ".json", meta}} {
		hdr := &tar.Header{Name: m.name, Mode: 0o644, Size: int64(len(m.data)), Typeflag: tar.TypeReg, ModTime: tarTime, Format: tar.FormatUSTAR}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := tw.Write(m.data); err != nil {
			return err
		}
	}
	return nil
}

// writeImageSet writes the annotated or the test set: n images, each with
// CaptionsPerImage distinct true captions of which partial are incomplete.
func (g *generator) writeImageSet(ctx context.Context, name string, set, n, partial int) (ImageSet, error) {
	cfg := g.cfg
	dir := filepath.Join(cfg.Out, name)
	if err := os.MkdirAll(filepath.Join(dir, "images"), 0o755); err != nil {
		return ImageSet{}, fmt.Errorf("world: %w", err)
	}
	s := ImageSet{Annotations: filepath.Join(dir, "annotations.json")}
	const chunk = 64
	for start := 0; start < n; start += chunk {
		end := min(start+chunk, n)
		pics := make([]planned, end-start)
		for k := range pics {
			pics[k] = planImage(cfg.Seed, set, start+k, cfg.JPEGShare)
		}
		images, err := g.renderAll(ctx, pics)
		if err != nil {
			return s, fmt.Errorf("world: %s images: %w", name, err)
		}
		for k, data := range images {
			i := start + k
			img := AnnotatedImage{Image: fmt.Sprintf("images/%06d.%s", i+1, pics[k].format), ImageID: i + 1}
			img.Truth.Scene, img.Truth.CleanCaption = pics[k].pic, pics[k].pic.CleanCaption()
			img.Captions = imageCaptions(pics[k].pic, captionRNG(cfg.Seed, set, i), cfg.CaptionsPerImage, partial)
			for _, c := range img.Captions {
				if err := g.checkCaption(fmt.Sprintf("%s image %d", name, img.ImageID), c); err != nil {
					return s, err
				}
			}
			if err := writeFileAtomic(s.ImagePath(img), data); err != nil {
				return s, fmt.Errorf("world: %w", err)
			}
			s.Images = append(s.Images, img)
		}
		g.progress(name, end-start)
	}
	data, err := json.MarshalIndent(s.Images, "", " ")
	if err != nil {
		return s, fmt.Errorf("world: %s annotations: %w", name, err)
	}
	if err := writeFileAtomic(s.Annotations, data); err != nil {
		return s, fmt.Errorf("world: %w", err)
	}
	return s, nil
}

// imageCaptions are n true captions of p, as people write them: n−partial full ones
// in varied words and partial incomplete ones, in a random order, distinct as far as the
// grammar's variety allows.
func imageCaptions(p Picture, r *rand.Rand, n, partial int) []string {
	var out []string
	seen := map[string]bool{}
	for k := range n {
		var c string
		for try := range 20 {
			if k < n-partial {
				c = p.fullCaption(r)
			} else {
				c = p.incompleteCaption(r)
			}
			if !seen[c] || try == 19 {
				break
			}
		}
		seen[c] = true
		out = append(out, c)
	}
	r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// writeFileAtomic writes data to path through a temporary file, so a world cut short
// never holds half a file under a final name.
func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".partial"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// relPath is p relative to dir, with slashes, as world.json lists paths.
func relPath(dir, p string) string {
	r, err := filepath.Rel(dir, p)
	if err != nil {
		return p
	}
	return filepath.ToSlash(r)
}
