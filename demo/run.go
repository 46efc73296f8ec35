package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/capfilt/capfilt/coordinator"
	"github.com/capfilt/capfilt/synth"
	"github.com/capfilt/capfilt/trainer"
)

// Config is one demo.
type Config struct {
	// Workdir holds everything the demo writes: a folder per seed (the world, every
	// model, the CapFilt outputs), report.html, table.txt and demo.json.
	Workdir string
	Recipe  Recipe
	// Seeds are the replicates: each seed draws its own world, initial model, data
	// orders, hard negatives and samples; the table averages over them.
	Seeds []uint64
	// Workers is the number of CapFilt workers in the embedded pipeline (default 2).
	Workers int
	// Threads, when positive, is written to the report as the per-op thread count the
	// command set.
	Threads int
	Version string
	Hooks   Hooks
	// Runner, when set, runs each seed instead of this process (the command runs each
	// in a child process), Parallel of them at once; nil runs them here, one by one.
	Runner   SeedRunner
	Parallel int
}

// SeedRunner runs one seed of cfg's demo (RunSeed, somewhere) and returns what it measured.
type SeedRunner func(ctx context.Context, cfg Config, seed uint64) (*SeedOutcome, error)

// SeedOutcome is one seed's demo: its measurements and the time of each of its stages.
// RunSeed writes it to the seed's folder as seed.json.
type SeedOutcome struct {
	Result SeedResult  `json:"result"`
	Stages []StageTime `json:"stages"`
}

// SeedFile is where RunSeed writes a seed's outcome, in the seed's folder under the workdir.
func SeedFile(workdir string, seed uint64) string {
	return filepath.Join(workdir, seedFolder(seed), "seed.json")
}

// Hooks are how a caller watches a demo.
type Hooks struct {
	// Stage is told when a stage starts (Took zero) and when it ends.
	Stage func(StageEvent)
	// Train is each training run's progress after every step.
	Train func(stage string, p trainer.Progress)
	// CapFilt is each CapFilt run's status, twice a second.
	CapFilt func(stage string, st *coordinator.RunStatus)
	Log     *slog.Logger
}

// StageEvent is a stage starting or ending.
type StageEvent struct {
	Seed  uint64
	Name  string // "synth", "pretrain noisy", "capfilt nucleus", ...
	Index int    // the stage's number among the seed's stages, from 1
	Of    int    // the seed's stages
	Done  bool
	Took  time.Duration
}

// StageTime is how long one stage of one seed took.
type StageTime struct {
	Seed    uint64  `json:"seed"`
	Name    string  `json:"name"`
	Seconds float64 `json:"seconds"`
}

// Result is a finished demo.
type Result struct {
	Recipe  Recipe       `json:"recipe"`
	Seeds   []SeedResult `json:"seeds"`
	Table   Table        `json:"table"`
	Stages  []StageTime  `json:"stages"`
	Seconds float64      `json:"seconds"`
	Version string       `json:"version,omitempty"`
	Threads int          `json:"threads,omitempty"`
	// Report and TableFile are the files written into the workdir.
	Report    string `json:"report"`
	TableFile string `json:"table_file"`
}

// marker is the file that says a folder holds a demo (and may be replaced by one).
const marker = "demo.json"

// Run runs the demo for every seed, writes the table and the report, and returns them.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.Recipe.Validate(); err != nil {
		return nil, err
	}
	if len(cfg.Seeds) == 0 {
		return nil, errors.New("demo: no seeds")
	}
	if cfg.Workers < 1 {
		cfg.Workers = 2
	}
	if cfg.Hooks.Log == nil {
		cfg.Hooks.Log = slog.New(slog.DiscardHandler)
	}
	if err := prepareWorkdir(cfg.Workdir); err != nil {
		return nil, err
	}
	began := time.Now()
	res := &Result{Recipe: cfg.Recipe, Version: cfg.Version, Threads: cfg.Threads}
	outcomes, err := runSeeds(ctx, cfg)
	if err != nil {
		return nil, err
	}
	for _, o := range outcomes {
		res.Seeds = append(res.Seeds, o.Result)
		res.Stages = append(res.Stages, o.Stages...)
	}
	res.Table = NewTable(res.Seeds)
	res.Seconds = time.Since(began).Seconds()
	if err := writeOutputs(cfg.Workdir, res); err != nil {
		return nil, err
	}
	return res, nil
}

// runSeeds runs every seed, through cfg.Runner (cfg.Parallel at once) or here, and
// returns their outcomes in the order of cfg.Seeds. The first seed to fail stops the others.
func runSeeds(ctx context.Context, cfg Config) ([]*SeedOutcome, error) {
	out := make([]*SeedOutcome, len(cfg.Seeds))
	if cfg.Runner == nil {
		for i, seed := range cfg.Seeds {
			o, err := RunSeed(ctx, cfg, seed)
			if err != nil {
				return nil, err
			}
			out[i] = o
		}
		return out, nil
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	slots := make(chan struct{}, max(1, cfg.Parallel))
	var wg sync.WaitGroup
	for i, seed := range cfg.Seeds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				return
			}
			defer func() { <-slots }()
			o, err := cfg.Runner(ctx, cfg, seed)
			if err != nil {
				cancel(fmt.Errorf("demo seed %d: %w", seed, err))
				return
			}
			out[i] = o
		}()
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return nil, err
	}
	return out, nil
}

// RunSeed runs one seed's demo into its folder under cfg.Workdir (which Run prepared),
// writes its outcome there (SeedFile) and returns it.
func RunSeed(ctx context.Context, cfg Config, seed uint64) (*SeedOutcome, error) {
	if cfg.Workers < 1 {
		cfg.Workers = 2
	}
	if cfg.Hooks.Log == nil {
		cfg.Hooks.Log = slog.New(slog.DiscardHandler)
	}
	res := &Result{}
	s := &seedRun{cfg: cfg, seed: seed, dir: filepath.Join(cfg.Workdir, seedFolder(seed)), res: res}
	sr, err := s.run(ctx)
	if err != nil {
		return nil, fmt.Errorf("demo seed %d: %w", seed, err)
	}
	o := &SeedOutcome{Result: *sr, Stages: res.Stages}
	data, err := json.Marshal(o)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(SeedFile(cfg.Workdir, seed), data, 0o644); err != nil {
		return nil, fmt.Errorf("demo seed %d: %w", seed, err)
	}
	return o, nil
}

// ReadSeedFile reads the outcome RunSeed wrote for seed.
func ReadSeedFile(workdir string, seed uint64) (*SeedOutcome, error) {
	data, err := os.ReadFile(SeedFile(workdir, seed))
	if err != nil {
		return nil, fmt.Errorf("demo seed %d: %w", seed, err)
	}
	var o SeedOutcome
	if err := json.Unmarshal(data, &o); err != nil {
		return nil, fmt.Errorf("demo seed %d: %s: %w", seed, SeedFile(workdir, seed), err)
	}
	return &o, nil
}

func seedFolder(seed uint64) string { return fmt.Sprintf("seed-%d", seed) }

// prepareWorkdir makes the workdir, or empties the one an earlier demo left (its own
// files only); a folder holding anything else is refused.
func prepareWorkdir(dir string) error {
	if dir == "" {
		return errors.New("demo: no workdir")
	}
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return os.MkdirAll(dir, 0o755)
	}
	if err != nil {
		return fmt.Errorf("demo: workdir: %w", err)
	}
	if len(entries) == 0 {
		return nil
	}
	if _, err := os.Stat(filepath.Join(dir, marker)); err != nil {
		return fmt.Errorf("demo: workdir %s is not empty and holds no earlier demo (%s): choose another --workdir", dir, marker)
	}
	own := []string{marker, reportName, tableName}
	for _, e := range entries {
		var seed uint64
		if e.IsDir() && sscanSeed(e.Name(), &seed) {
			own = append(own, e.Name())
		}
	}
	for _, e := range entries {
		if !slices.Contains(own, e.Name()) {
			return fmt.Errorf("demo: workdir %s holds %s, which no demo writes: choose another --workdir", dir, e.Name())
		}
	}
	for _, name := range own {
		if err := os.RemoveAll(filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("demo: replace the earlier demo in %s: %w", dir, err)
		}
	}
	return nil
}

func sscanSeed(name string, seed *uint64) bool {
	n, err := fmt.Sscanf(name, "seed-%d", seed)
	return err == nil && n == 1 && name == seedFolder(*seed)
}

// Names of the files the demo writes into the workdir.
const (
	reportName = "report.html"
	tableName  = "table.txt"
)

func writeOutputs(dir string, res *Result) error {
	res.Report, res.TableFile = filepath.Join(dir, reportName), filepath.Join(dir, tableName)
	if err := os.WriteFile(res.TableFile, []byte(res.Table.Text(res)), 0o644); err != nil {
		return err
	}
	if err := WriteReport(res.Report, res); err != nil {
		return err
	}
	data, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, marker), data, 0o644)
}

// seedRun is one seed's demo.
type seedRun struct {
	cfg   Config
	seed  uint64
	dir   string
	res   *Result
	world *synth.World
	stage int
	out   *SeedResult
}

// The stages of one seed, in order.
var stageNames = []string{
	"synth", "init",
	"pretrain " + RowBaseline, "finetune captioner", "finetune filter",
	"capfilt nucleus", "capfilt nucleus, filter off", "capfilt beam",
	"pretrain " + RowC, "pretrain " + RowF, "pretrain " + RowCF, "pretrain " + RowCFBeam,
	"evaluate " + RowBaseline, "evaluate " + RowC, "evaluate " + RowF, "evaluate " + RowCF, "evaluate " + RowCFBeam,
}

// timed runs one stage, telling the hooks and recording its time.
func (s *seedRun) timed(name string, fn func() error) error {
	s.stage++
	h := s.cfg.Hooks
	ev := StageEvent{Seed: s.seed, Name: name, Index: s.stage, Of: len(stageNames)}
	if h.Stage != nil {
		h.Stage(ev)
	}
	began := time.Now()
	if err := fn(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	ev.Done, ev.Took = true, time.Since(began)
	s.res.Stages = append(s.res.Stages, StageTime{Seed: s.seed, Name: name, Seconds: ev.Took.Seconds()})
	h.Log.Info("stage done", "seed", s.seed, "stage", name, "seconds", ev.Took.Seconds())
	if h.Stage != nil {
		h.Stage(ev)
	}
	return nil
}
