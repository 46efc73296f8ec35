package trainer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/capfilt/capfilt/blip"
	"github.com/capfilt/capfilt/captioner"
	"github.com/capfilt/capfilt/imageproc"
	"github.com/capfilt/capfilt/shards"
	"github.com/capfilt/capfilt/torch"
)

// Train runs cfg to its end (or MaxSteps) and returns what it did. After every
// checkpoint cfg.Out holds the model in the HF layout. In a data-parallel run (cfg.Dist)
// every process calls Train with the same settings; only rank 0 writes.
//
// The calling goroutine is locked to its OS thread for the run: libtorch keeps the
// grad mode per thread, and glibc gives every thread that allocates its own arena.
func Train(ctx context.Context, cfg Config, hooks Hooks) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	r, err := newRun(ctx, cfg, hooks)
	if err != nil {
		return nil, err
	}
	defer r.close()
	return r.loop(ctx)
}

// run is one Train call's state.
type run struct {
	cfg   Config
	hooks Hooks
	log   *slog.Logger
	rank  int
	world int

	ds        *Dataset
	loader    LoaderConfig
	imageSize int
	set       settings
	spe       int // steps per epoch
	stop      int // the step the run ends at

	tm   *trainModel
	obj  objective
	opt  *torch.AdamW
	grad *torch.GradSync
	gen  *torch.Generator // model and queue initialisation
	neg  *torch.Generator // hard negatives

	// Where the run stands: steps done, and the epoch and step within it of the next step.
	step, epoch, epochStep int
	pos                    *DataPosition

	ckpt    checkpointWriter
	logFile *os.File
	res     *Result
	meter   meter
}

func newRun(ctx context.Context, cfg Config, hooks Hooks) (_ *run, err error) {
	r := &run{cfg: cfg, hooks: hooks, log: hooks.Log, rank: cfg.rank(), world: cfg.world(), ckpt: checkpointWriter{out: cfg.Out},
		res: &Result{Dir: cfg.Out}}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	defer func() {
		if err != nil {
			r.close()
		}
	}()
	var saved *savedCheckpoint
	if cfg.Resume {
		if saved, err = latestCheckpoint(cfg.Out); err != nil {
			return nil, err
		}
	} else if _, err := os.Stat(filepath.Join(cfg.Out, stateDirName)); err == nil {
		return nil, fmt.Errorf("out %s already holds a training run (train_state/): resume it or train into another folder", cfg.Out)
	}
	store := cfg.Store
	if store == nil {
		store = shards.OpenStore(shards.StoreConfig{})
	}
	if r.ds, err = OpenDataset(ctx, store, cfg.Data, DatasetOptions{Captions: cfg.Captions, MaxWords: cfg.MaxWords, Shard: cfg.Shard}); err != nil {
		return nil, err
	}
	if r.spe = r.ds.StepsPerEpoch(r.world, cfg.BatchSize); r.spe == 0 {
		return nil, fmt.Errorf("data: %d samples cannot fill one batch of %d on each of %d processes", r.ds.Len(), cfg.BatchSize, r.world)
	}
	if global := cfg.BatchSize * r.world; cfg.Task != TaskCaption && cfg.QueueSize%global != 0 {
		return nil, Problems{{Field: "queue_size", Value: fmt.Sprint(cfg.QueueSize),
			Reason: fmt.Sprintf("must be divisible by the global batch %d (batch_size %d × %d processes)", global, cfg.BatchSize, r.world)}}
	}
	r.stop = cfg.Epochs * r.spe
	if cfg.MaxSteps > 0 {
		r.stop = min(r.stop, cfg.MaxSteps)
	}

	// Every process draws the same initial model and queues from the seed (rank 0's are
	// broadcast anyway); dropout and hard negatives draw per process.
	r.gen = torch.NewGenerator(cfg.Seed)
	r.neg = torch.NewGenerator(mix(cfg.Seed, uint64(r.rank), saltNegatives))
	torch.ManualSeed(mix(cfg.Seed, uint64(r.rank), saltDropout))
	start := cfg
	if saved != nil {
		start.Init = Init{From: saved.dir}
	}
	if r.tm, err = newTrainModel(start, r.gen); err != nil {
		return nil, err
	}
	m := r.tm.m
	if cfg.Device != torch.CPU {
		if err := blip.CheckDevice(cfg.Device, torch.Float32); err != nil {
			return nil, err
		}
		if err := m.To(cfg.Device, torch.Float32); err != nil {
			return nil, err
		}
	}
	r.imageSize = m.Config.Vision.ImageSize
	r.set = cfg.settings(r.ds, r.imageSize)
	if saved != nil {
		if diff := saved.state.Settings.differences(r.set); len(diff) > 0 {
			return nil, fmt.Errorf("resume %s: the run was made with other settings or data: %s", cfg.Out, strings.Join(diff, "; "))
		}
	}
	if err := m.SetTrainable(true); err != nil {
		return nil, err
	}
	if cfg.Dist != nil {
		if err := cfg.Dist.Broadcast(m.TrainableParams(), 0, torch.DefaultBucketBytes); err != nil {
			return nil, fmt.Errorf("broadcast of the weights from rank 0: %w", err)
		}
	}
	promptLen := len(captioner.PromptIDs(r.tm.tok, CaptionPrompt))
	if r.obj, err = newObjective(cfg, m, promptLen, r.gen, r.neg, gatherer(cfg.Dist)); err != nil {
		return nil, err
	}
	if r.opt, err = torch.NewAdamW(m.AdamWGroups(cfg.LR, cfg.WeightDecay)...); err != nil {
		return nil, err
	}
	if cfg.Dist != nil {
		if r.grad, err = torch.NewGradSync(cfg.Dist, m.TrainableParams(), torch.DefaultBucketBytes); err != nil {
			return nil, err
		}
	}
	r.loader = cfg.loaderConfig(r.imageSize, r.rank, r.world)
	if saved != nil {
		if err := r.resume(saved); err != nil {
			return nil, err
		}
	}
	if r.rank == 0 {
		if err := os.MkdirAll(cfg.Out, 0o755); err != nil {
			return nil, err
		}
		if r.logFile, err = openTrainLog(filepath.Join(cfg.Out, trainLogName), r.step); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// loaderConfig is how rank of world reads the data at imageSize.
func (c Config) loaderConfig(imageSize, rank, world int) LoaderConfig {
	l := LoaderConfig{BatchSize: c.BatchSize, Transform: imageproc.NewTrainTransform(imageSize, c.MinScale),
		NoAugment: !c.Augment, Seed: c.Seed, Rank: rank, World: world, Workers: c.Workers, ShuffleBuffer: c.ShuffleBuffer}
	if !c.Augment {
		l.Transform = imageproc.TrainTransform{Size: imageSize}
	}
	return l
}

// resume restores the optimizer, the objective, this process's random states and data
// position from a checkpoint.
func (r *run) resume(ck *savedCheckpoint) error {
	st := ck.state
	if st.StepsPerEpoch != r.spe {
		return fmt.Errorf("resume %s: the checkpoint's epochs have %d steps, this run's %d (the data changed)", r.cfg.Out, st.StepsPerEpoch, r.spe)
	}
	if len(st.Ranks) != r.world || st.Ranks[r.rank].Rank != r.rank {
		return fmt.Errorf("resume %s: the checkpoint holds %d processes' state, this run has %d", r.cfg.Out, len(st.Ranks), r.world)
	}
	if err := ck.loadInto(r.opt, r.obj); err != nil {
		return err
	}
	rs := st.Ranks[r.rank]
	if err := rs.restore(r.cfg.Device, r.obj.negatives()); err != nil {
		return err
	}
	r.step, r.epoch, r.epochStep, r.pos = st.Step, st.Epoch, st.EpochStep, rs.Data
	if r.epochStep >= r.spe {
		r.epoch, r.epochStep, r.pos = r.epoch+1, 0, nil
	}
	r.res.Resumed = true
	r.log.Info("resumed", "dir", ck.dir, "step", r.step, "epoch", r.epoch, "epoch_step", r.epochStep)
	return nil
}

func (r *run) close() {
	if r.logFile != nil {
		r.logFile.Close()
	}
	if r.grad != nil {
		r.grad.Close()
	}
	if r.opt != nil {
		r.opt.Close()
	}
	if r.obj != nil {
		r.obj.close()
	}
	if r.tm != nil {
		r.tm.m.Close()
	}
	for _, g := range []*torch.Generator{r.gen, r.neg} {
		if g != nil {
			g.Close()
		}
	}
}

// loop runs the epochs from where the run stands.
func (r *run) loop(ctx context.Context) (*Result, error) {
	r.meter.start(r.step)
	for ; r.epoch < r.cfg.Epochs && r.step < r.stop; r.epoch++ {
		if err := r.runEpoch(ctx); err != nil {
			return nil, err
		}
	}
	r.res.Steps, r.res.Epochs = r.step, r.step/r.spe
	return r.res, nil
}

func (r *run) runEpoch(ctx context.Context) error {
	it, err := r.ds.Epoch(ctx, r.epoch, r.loader, r.pos)
	if err != nil {
		return err
	}
	defer it.Close()
	r.meter.startEpoch()
	for r.epochStep < r.spe && r.step < r.stop {
		if err := ctx.Err(); err != nil {
			return err
		}
		t0, wait0 := time.Now(), it.Stats().Wait
		b, err := it.Next()
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("epoch %d: the data ended after %d of %d steps", r.epoch, r.epochStep, r.spe)
		}
		if err != nil {
			return err
		}
		lr := r.cfg.LearningRate(r.epoch, r.epochStep)
		alpha := r.cfg.alpha(r.epoch, r.epochStep, r.spe)
		loss, err := r.trainStep(b, lr, alpha)
		if err != nil {
			return fmt.Errorf("step %d (epoch %d, step %d of %d): %w", r.step+1, r.epoch, r.epochStep+1, r.spe, err)
		}
		r.step++
		r.epochStep++
		pos := b.Position
		r.pos = &pos
		st := it.Stats()
		r.report(lr, loss, b.Len(), st, time.Since(t0), st.Wait-wait0)
		end := r.epochStep == r.spe || r.step == r.stop
		if end || (r.cfg.SaveEvery > 0 && r.step%r.cfg.SaveEvery == 0) {
			if err := r.checkpoint(); err != nil {
				return err
			}
		}
	}
	st := it.Stats()
	r.res.EpochStats = append(r.res.EpochStats, st)
	if r.epochStep == r.spe {
		r.log.Info("epoch done", "epoch", r.epoch, "steps", r.epochStep, "samples", st.Samples, "skipped", st.Skipped,
			"data_wait", st.Wait)
		r.epochStep, r.pos = 0, nil
	}
	return nil
}

// trainStep is one optimisation step on batch b: zero the gradients, the task's
// losses, backward (with the gradients averaged over processes as they become
// ready), AdamW at lr. Every tensor it makes is freed before it returns.
func (r *run) trainStep(b *Batch, lr, alpha float64) (LossValues, error) {
	s := torch.NewScope()
	defer s.Close()
	r.meter.stepAllReduce = 0
	if err := r.opt.SetLR(0, lr); err != nil {
		return LossValues{}, err
	}
	if err := r.opt.ZeroGrad(); err != nil {
		return LossValues{}, err
	}
	in, err := r.tensors(s, b)
	if err != nil {
		return LossValues{}, err
	}
	l, err := r.obj.losses(s, in, blip.StepOptions{Alpha: alpha, Train: true})
	if err != nil {
		return LossValues{}, err
	}
	if r.grad != nil {
		if err := r.grad.Prepare(); err != nil {
			return LossValues{}, err
		}
	}
	if err := l.Total.Backward(); err != nil {
		return LossValues{}, fmt.Errorf("backward: %w", err)
	}
	if r.grad != nil {
		if err := r.grad.Finish(); err != nil {
			return LossValues{}, err
		}
		r.meter.stepAllReduce = r.grad.LastStep().Wait
	}
	if err := r.opt.Step(); err != nil {
		return LossValues{}, err
	}
	return lossValues(l)
}

// tensors turns a loader batch into the model's inputs.
func (r *run) tensors(s *torch.Scope, b *Batch) (blip.Batch, error) {
	n := int64(b.Len())
	ids, mask := b.Tokenize(r.tm.tok, r.cfg.Task.textMode())
	t := int64(len(ids[0]))
	size := int64(b.ImageSize)
	px := s.Track(torch.FromFloat32(b.Pixels, n, 3, size, size))
	if dev := r.tm.m.Device(); dev != torch.CPU {
		px = px.ToDevice(dev)
	}
	in := blip.Batch{Pixels: px, IDs: s.Track(torch.FromInt64(flatRows(ids), n, t)), Mask: s.Track(torch.FromInt64(flatRows(mask), n, t))}
	if r.cfg.Task == TaskRetrieval {
		in.ImageIDs = s.Track(torch.FromInt64(b.ImageIDs, n))
	}
	for _, x := range []*torch.Tensor{in.Pixels, in.IDs, in.Mask, in.ImageIDs} {
		if x != nil && x.Err() != nil {
			return blip.Batch{}, x.Err()
		}
	}
	return in, nil
}

func lossValues(l blip.Losses) (LossValues, error) {
	var v LossValues
	for _, p := range []struct {
		t   *torch.Tensor
		dst *float64
	}{{l.ITC, &v.ITC}, {l.ITM, &v.ITM}, {l.LM, &v.LM}, {l.Total, &v.Total}} {
		if p.t == nil {
			continue
		}
		x, err := p.t.Item()
		if err != nil {
			return v, err
		}
		*p.dst = x
	}
	return v, nil
}

// checkpoint gathers every process's state to rank 0, which writes the checkpoint.
func (r *run) checkpoint() error {
	rs, err := captureRank(r.rank, r.cfg.Device, r.obj.negatives(), r.pos)
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	ranks := []rankState{rs}
	if r.cfg.Dist != nil {
		if ranks, err = gatherRankStates(r.cfg.Dist, r.cfg.Device, rs); err != nil {
			return fmt.Errorf("checkpoint at step %d: %w", r.step, err)
		}
	}
	if r.rank != 0 {
		return nil
	}
	st := trainState{Format: stateFormat, Settings: r.set, Step: r.step, Epoch: r.epoch, EpochStep: r.epochStep,
		StepsPerEpoch: r.spe, Ranks: ranks}
	if err := r.ckpt.write(st, r.tm, r.opt, r.obj); err != nil {
		return err
	}
	r.log.Info("checkpoint", "dir", r.cfg.Out, "step", r.step, "epoch", r.epoch)
	return nil
}
