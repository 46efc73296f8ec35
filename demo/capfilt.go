package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/capfilt/capfilt/coordinator"
	"github.com/capfilt/capfilt/localrun"
	"github.com/capfilt/capfilt/pipeline"
	"github.com/capfilt/capfilt/pipeline/spec"
	"github.com/capfilt/capfilt/shards"
	"github.com/capfilt/capfilt/workers"
)

// capfiltSpec is one CapFilt run of the web set.
type capfiltSpec struct {
	Name              string // nucleus, nucleus-all, beam
	Captioner, Filter string
	Generation        spec.Generation
	Threshold         float64 // on the ITM match probability; 0 keeps every caption
}

// CapFiltRun is what one CapFilt run of the web set did, as its manifest, stats and
// cleaned Parquet say.
type CapFiltRun struct {
	Name       string    `json:"name"`
	Mode       spec.Mode `json:"mode"`
	Threshold  float64   `json:"threshold"`
	Dir        string    `json:"dir"`
	Seconds    float64   `json:"seconds"`
	Images     int64     `json:"images"`      // web images read
	ImagesKept int64     `json:"images_kept"` // images that kept at least one caption
	// Captions counts the filter's decisions by caption source (web, synthetic).
	Captions map[string]shards.CaptionCounts `json:"captions"`
	// Histograms of the ITM match probability by source, as the run's stats hold them.
	ITM map[string]*shards.Histogram `json:"itm_histogram"`
	// WebTrueITM and WebNoiseITM bin the web texts' match probabilities (as ITM) apart
	// by the world's truth: filled for the filter-off run, which keeps every score.
	WebTrueITM  []float64 `json:"web_true_itm,omitempty"`
	WebNoiseITM []float64 `json:"web_noise_itm,omitempty"`

	rows map[string]shards.CleanedRow
}

// ratio is a of b, 0 when b is: with a caption count, the share the filter rejected is
// what the paper calls the noise ratio (25% nucleus, 19% beam synthetic captions).
func ratio(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// capfilt runs the embedded pipeline over the web set (localrun.Run, what capfilt run
// does) with the captioner and the filter, and reads its outputs back.
func (s *seedRun) capfilt(ctx context.Context, stage string, c capfiltSpec) (*CapFiltRun, error) {
	out := filepath.Join(s.dir, "capfilt", c.Name)
	ou, err := shards.ParseURL(out)
	if err != nil {
		return nil, err
	}
	rule := spec.DefaultRule()
	rule.Web, rule.Synthetic = spec.ITMOnly(c.Threshold), spec.ITMOnly(c.Threshold)
	rs := pipeline.RunSettings{Run: fmt.Sprintf("demo-%d-%s", s.seed, c.Name), Inputs: []string{s.world.WebPattern}, Output: ou,
		Captioner: pipeline.ModelSpec{Path: c.Captioner}, Filter: pipeline.ModelSpec{Path: c.Filter},
		Generation: c.Generation, Rule: rule, Queue: spec.DefaultQueue(), Version: s.cfg.Version}
	lc := localrun.Config{Settings: rs, Workers: s.cfg.Workers, Worker: workers.Config{BatchSize: s.cfg.Recipe.BatchSize},
		Log: s.cfg.Hooks.Log, Version: s.cfg.Version, StoreDir: filepath.Join(s.dir, "capfilt", "nats-"+c.Name)}
	if h := s.cfg.Hooks.CapFilt; h != nil {
		lc.OnProgress = func(st *coordinator.RunStatus) { h(stage, st) }
	}
	began := time.Now()
	res, err := localrun.Run(ctx, lc)
	if err != nil {
		return nil, err
	}
	took := time.Since(began)
	if err := os.RemoveAll(lc.StoreDir); err != nil {
		return nil, err
	}
	m := res.Manifest
	if !m.Complete || m.Dead > 0 || m.Damaged > 0 {
		return nil, fmt.Errorf("run %s: %d shards done, %d dead, %d damaged (see %s)", rs.Run, m.Done, m.Dead, m.Damaged, res.ManifestURL)
	}
	cr := &CapFiltRun{Name: c.Name, Mode: c.Generation.Mode, Threshold: c.Threshold, Dir: out, Seconds: took.Seconds(),
		Images: m.Totals.Read, ImagesKept: m.Totals.Accepted, Captions: map[string]shards.CaptionCounts{},
		ITM: map[string]*shards.Histogram{}, rows: map[string]shards.CleanedRow{}}
	if m.Totals.Skipped > 0 {
		return nil, fmt.Errorf("run %s skipped %d web samples: the world's samples are all readable", rs.Run, m.Totals.Skipped)
	}
	store := shards.OpenStore(shards.StoreConfig{})
	for _, sh := range m.Shards {
		su, err := shards.ParseURL(sh.Stats)
		if err != nil {
			return nil, err
		}
		st, err := shards.ReadStats(ctx, store, su)
		if err != nil {
			return nil, err
		}
		for _, src := range []string{shards.SourceWeb, shards.SourceSynthetic} {
			n := cr.Captions[src]
			if c := st.Captions[src]; c != nil {
				n.Accepted, n.Rejected = n.Accepted+c.Accepted, n.Rejected+c.Rejected
			}
			cr.Captions[src] = n
			if h := st.ITM[src]; h != nil {
				if cr.ITM[src] == nil {
					cr.ITM[src] = shards.NewHistogram(h.Lo, h.Hi, len(h.Counts))
				}
				if err := cr.ITM[src].Merge(h); err != nil {
					return nil, err
				}
			}
		}
		if err := cr.readRows(sh.Output); err != nil {
			return nil, err
		}
	}
	if int64(len(cr.rows)) != cr.ImagesKept {
		return nil, fmt.Errorf("run %s: the cleaned Parquet holds %d rows, the manifest counts %d images kept", rs.Run, len(cr.rows), cr.ImagesKept)
	}
	return cr, nil
}

// readRows reads one cleaned Parquet's rows into the run, keyed by sample key.
func (c *CapFiltRun) readRows(output string) error {
	u, err := shards.ParseURL(output)
	if err != nil {
		return err
	}
	f, err := os.Open(u.Path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	r, err := shards.OpenCleaned(io.NewSectionReader(f, 0, fi.Size()), output, shards.CleanedReadOptions{})
	if err != nil {
		return err
	}
	defer r.Close()
	for {
		row, err := r.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if _, dup := c.rows[row.Key]; dup {
			return fmt.Errorf("%s: key %s appears twice in the run's output", output, row.Key)
		}
		c.rows[row.Key] = row
	}
}

// caption is the row's caption of src, if it kept one.
func caption(row shards.CleanedRow, src string) (shards.Caption, bool) {
	for _, c := range row.Captions {
		if c.Source == src {
			return c, true
		}
	}
	return shards.Caption{}, false
}
