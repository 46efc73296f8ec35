package trainer

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/capfilt/capfilt/blip"
	"github.com/capfilt/capfilt/captioner"
	"github.com/capfilt/capfilt/shards"
	"github.com/capfilt/capfilt/torch"
)

// launchHelpers runs cfg as a job of world processes of the test binary (Gloo on
// loopback), started by LaunchLocal as --nproc-per-node starts them.
func launchHelpers(t *testing.T, cfg Config, world int, extraEnv ...string) (string, error) {
	t.Helper()
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	env := append(append(os.Environ(), trainHelperEnv+"="+string(raw), "GLOO_SOCKET_IFNAME=lo"), extraEnv...)
	err = LaunchLocal(context.Background(), LaunchConfig{Procs: world, Exe: os.Args[0],
		Args: []string{"-test.run", "^TestTrainHelperProcess$", "-test.v"}, Env: env, Stdout: &out, Stderr: &out, Grace: 20 * time.Second})
	return out.String(), err
}

// distConfig is a job small enough for a test: batch 4 per process, queue 32 (the
// global batch 8 divides it), dropout off, 4 steps of epoch 0.
func distConfig(t *testing.T, task Task, out string) Config {
	cfg := tinyConfig(t, task, out)
	cfg.BatchSize, cfg.QueueSize, cfg.MaxSteps, cfg.Dropout = 4, 32, 4, 0
	cfg.Augment, cfg.MinScale, cfg.NegativeAllRank = true, 0.5, true
	return cfg
}

// Two processes with batch B each end with the weights of one process computing the
// same per-rank terms on the same two half-batches (≤ 1e-5, dropout off, the same
// negative draws). With BLIP's data-parallel semantics a 2×B run is NOT a 1×2B run of
// the same loss: each process's ITC compares its B images with its own B texts and the
// queue, its pretraining hard negatives come from its own batch and its own generator,
// and its LM loss is a mean over its own tokens; what is global is the queue write (the
// momentum features of all 2B pairs, gathered), the averaged gradient (the gradient of
// the mean of the per-rank losses) and, for retrieval with negative_all_rank, the ITM
// negatives' candidates (all 2B, the image embeddings gathered with their gradient).
// So the one-process side here runs each rank's step in turn on one model, each with
// its own momentum model, queues and negative generator, gathering the other half as
// the job would, and averages the two gradients before AdamW: the broadcast, the
// bucketed gradient all-reduce, the gathered queue writes, the split of the data by
// rank and all_gather_with_grad are what the comparison checks.
func TestTwoProcessesMatchOneComputingTheirPerRankTerms(t *testing.T) {
	for _, task := range []Task{TaskPretrain, TaskRetrieval} {
		t.Run(string(task), func(t *testing.T) {
			cfg := distConfig(t, task, t.TempDir())
			if log, err := launchHelpers(t, cfg, 2); err != nil {
				t.Fatalf("2 processes: %v\n%s", err, log)
			}
			want := emulateRanks(t, cfg, 2)
			defer want.Close()
			got, err := blip.ReadTensors(filepath.Join(cfg.Out, modelFile))
			if err != nil {
				t.Fatal(err)
			}
			worst, worstName, keyBias := 0.0, "", 0.0
			for _, p := range want.Params() {
				g, ok := got[p.Name]
				if !ok {
					t.Fatalf("the job's model lacks %s", p.Name)
				}
				d, k := paramDiff(t, p.Name, p.Tensor(), g)
				keyBias = max(keyBias, k)
				if d > worst {
					worst, worstName = d, p.Name
				}
			}
			for _, x := range got {
				x.Free()
			}
			t.Logf("%s: largest difference %.3g (%s) over %d parameters after %d steps; attention key biases %.3g",
				task, worst, worstName, len(want.Params()), cfg.MaxSteps, keyBias)
			if worst > 1e-5 {
				t.Errorf("weights differ by %.3g (%s)", worst, worstName)
			}
			// The key biases follow rounding noise (see paramDiff), but no further than
			// AdamW's step bound allows.
			if bound := cfg.LR * float64(cfg.MaxSteps) * 1.01; keyBias > bound {
				t.Errorf("attention key biases differ by %.3g, more than AdamW's %d steps of lr %g can move them", keyBias, cfg.MaxSteps, cfg.LR)
			}
			// Only rank 0 wrote, with every rank's state: two data positions, two shares.
			ck, err := latestCheckpoint(cfg.Out)
			if err != nil {
				t.Fatal(err)
			}
			if len(ck.state.Ranks) != 2 || ck.state.Ranks[1].Data.Rank != 1 || ck.state.Settings.World != 2 {
				t.Errorf("checkpoint state: %+v", ck.state)
			}
		})
	}
}

// paramDiff is the largest difference between two values of parameter name, and apart
// from it that of the attention key biases (a ViT qkv bias's middle third, a BERT
// key.bias). Those get no gradient but rounding noise: adding b to every key adds q·b
// to each row of the attention logits, which the softmax cancels. AdamW divides that
// noise by its own running size, so rounding differences of 1e-9 elsewhere (they show
// between the job and the emulation at some steps and not others: the same ops in
// other processes, on other buffers) become steps of up to lr in those entries.
func paramDiff(t *testing.T, name string, a, b *torch.Tensor) (rest, keyBias float64) {
	t.Helper()
	x, err := a.Float32s()
	if err != nil {
		t.Fatal(err)
	}
	y, err := b.Float32s()
	if err != nil {
		t.Fatal(err)
	}
	if len(x) != len(y) {
		t.Fatalf("%s: %d vs %d values", name, len(x), len(y))
	}
	keyFrom, keyTo := 0, 0
	switch {
	case strings.HasSuffix(name, ".self_attn.qkv.bias"):
		keyFrom, keyTo = len(x)/3, 2*len(x)/3
	case strings.HasSuffix(name, ".key.bias"):
		keyFrom, keyTo = 0, len(x)
	}
	for i := range x {
		d := math.Abs(float64(x[i]) - float64(y[i]))
		if i >= keyFrom && i < keyTo {
			keyBias = max(keyBias, d)
		} else {
			rest = max(rest, d)
		}
	}
	return rest, keyBias
}

func maxAbsDiff(t *testing.T, a, b *torch.Tensor) float64 {
	t.Helper()
	x, err := a.Float32s()
	if err != nil {
		t.Fatal(err)
	}
	y, err := b.Float32s()
	if err != nil {
		t.Fatal(err)
	}
	if len(x) != len(y) {
		t.Fatalf("%d vs %d values", len(x), len(y))
	}
	d := 0.0
	for i := range x {
		d = math.Max(d, math.Abs(float64(x[i])-float64(y[i])))
	}
	return d
}

// emulateRanks runs cfg's first MaxSteps steps as world ranks would, in this process:
// each rank's batch from its share of the data, its step with its own momentum model,
// queues and negatives (an emulated gatherer supplying the other ranks' tensors), the
// gradients averaged, one AdamW step. It returns the model.
func emulateRanks(t *testing.T, cfg Config, world int) *blip.Model {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	ctx := context.Background()
	ds, err := OpenDataset(ctx, shards.OpenStore(shards.StoreConfig{}), cfg.Data, DatasetOptions{Captions: cfg.Captions, MaxWords: cfg.MaxWords})
	if err != nil {
		t.Fatal(err)
	}
	spe := ds.StepsPerEpoch(world, cfg.BatchSize)
	gen := torch.NewGenerator(cfg.Seed)
	defer gen.Close()
	tm, err := newTrainModel(cfg, gen)
	if err != nil {
		t.Fatal(err)
	}
	m := tm.m
	if err := m.SetTrainable(true); err != nil {
		t.Fatal(err)
	}
	state, err := gen.State()
	if err != nil {
		t.Fatal(err)
	}
	r := &run{cfg: cfg, tm: tm}
	ranks := make([]*emuRank, world)
	for k := range ranks {
		g := torch.NewGenerator(0) // each rank draws its queues from the state after the model's init
		if err := g.SetState(state); err != nil {
			t.Fatal(err)
		}
		neg := torch.NewGenerator(mix(cfg.Seed, uint64(k), saltNegatives))
		er := &emuRank{rank: k, world: world, model: m, gather: &emuGatherer{rank: k, world: world, model: m}}
		er.gather.ranks = ranks
		if er.obj, err = newObjective(cfg, m, len(captioner.PromptIDs(tm.tok, CaptionPrompt)), g, neg, er.gather); err != nil {
			t.Fatal(err)
		}
		er.gather.momentum = momentumOf(er.obj)
		if er.it, err = ds.Epoch(ctx, 0, cfg.loaderConfig(m.Config.Vision.ImageSize, k, world), nil); err != nil {
			t.Fatal(err)
		}
		ranks[k] = er
		defer func() { er.obj.close(); er.it.Close(); g.Close(); neg.Close() }()
	}
	opt, err := torch.NewAdamW(m.AdamWGroups(cfg.LR, cfg.WeightDecay)...)
	if err != nil {
		t.Fatal(err)
	}
	defer opt.Close()
	params := m.TrainableParams()
	for step := range cfg.MaxSteps {
		s := torch.NewScope()
		for _, er := range ranks {
			b, err := er.it.Next()
			if err != nil {
				t.Fatal(err)
			}
			if er.in, err = r.tensors(s, b); err != nil {
				t.Fatal(err)
			}
		}
		if err := opt.SetLR(0, cfg.LearningRate(0, step)); err != nil {
			t.Fatal(err)
		}
		sum := make([]*torch.Tensor, len(params))
		for _, er := range ranks {
			if err := opt.ZeroGrad(); err != nil {
				t.Fatal(err)
			}
			er.gather.calls = 0
			l, err := er.obj.losses(s, er.in, blip.StepOptions{Alpha: cfg.alpha(0, step, spe), Train: true})
			if err != nil {
				t.Fatal(err)
			}
			if err := l.Total.Backward(); err != nil {
				t.Fatal(err)
			}
			for i, p := range params {
				g, err := p.Grad()
				if err != nil || g == nil {
					t.Fatalf("rank %d: %v has no gradient (%v)", er.rank, i, err)
				}
				s.Track(g)
				if sum[i] == nil {
					sum[i] = g.DetachedClone()
				} else {
					sum[i] = sum[i].Add(g)
				}
			}
		}
		for i, p := range params {
			if err := p.SetGrad(s.Track(sum[i].DivScalar(float64(world)))); err != nil {
				t.Fatal(err)
			}
		}
		if err := opt.Step(); err != nil {
			t.Fatal(err)
		}
		s.Close()
	}
	return m
}

// emuRank is one emulated process.
type emuRank struct {
	rank, world int
	model       *blip.Model
	obj         objective
	gather      *emuGatherer
	it          *EpochIterator
	in          blip.Batch
}

func momentumOf(o objective) *blip.Momentum {
	switch o := o.(type) {
	case *pretrainObjective:
		return o.p.Momentum
	case *retrievalObjective:
		return o.r.Momentum
	}
	return nil
}

// emuGatherer stands in for the process group inside one process: asked to gather
// this rank's tensor, it finds which of this rank's step quantities the tensor is (a
// momentum or online feature, ids, mask, image ids: compared by value) and computes the
// same quantity for the other ranks from their inputs, then joins them in rank order.
// The momentum features are the other ranks' too: every rank's momentum model is the
// same after the step's update.
type emuGatherer struct {
	rank, world int
	model       *blip.Model
	momentum    *blip.Momentum
	ranks       []*emuRank
	calls       int
}

func (g *emuGatherer) Rank() int      { return g.rank }
func (g *emuGatherer) WorldSize() int { return g.world }

// quantities are the tensors a rank's step may gather, computed from in.
func (g *emuGatherer) quantities(in blip.Batch) map[string]*torch.Tensor {
	m, mo := g.model, g.momentum.Model
	q := map[string]*torch.Tensor{"ids": in.IDs, "mask": in.Mask}
	if in.ImageIDs != nil {
		q["image_ids"] = in.ImageIDs
	}
	torch.NoGrad(func() {
		q["image_m"] = mo.ImageFeatures(mo.EncodeImage(in.Pixels, true))
		q["text_m"] = mo.TextFeatures(mo.TextUnimodal(in.IDs, in.Mask, true))
		q["image"] = m.ImageFeatures(m.EncodeImage(in.Pixels, true))
		q["text"] = m.TextFeatures(m.TextUnimodal(in.IDs, in.Mask, true))
	})
	return q
}

func (g *emuGatherer) AllGather(t *torch.Tensor) (*torch.Tensor, error) {
	g.calls++
	own := g.quantities(g.ranks[g.rank].in)
	name := ""
	for n, x := range own {
		if sameValues(x, t) {
			name = n
			break
		}
	}
	if name == "" {
		return nil, fmt.Errorf("emulated gather %d of rank %d: %v is none of the step's quantities", g.calls, g.rank, t.Shape())
	}
	parts := make([]*torch.Tensor, g.world)
	for k, er := range g.ranks {
		if k == g.rank {
			parts[k] = t
			continue
		}
		parts[k] = g.quantities(er.in)[name]
	}
	var out *torch.Tensor
	torch.NoGrad(func() { out = torch.Cat(parts, 0).Detach() })
	return out, out.Err()
}

// AllGatherWithGrad joins this rank's image embeddings with the other ranks', computed
// by the online ViT on their pixels in this rank's graph: their gradient reaches the
// weights as the job's all-reduced gradient reaches the other ranks' ViT passes.
func (g *emuGatherer) AllGatherWithGrad(t *torch.Tensor) (*torch.Tensor, error) {
	parts := make([]*torch.Tensor, g.world)
	for k, er := range g.ranks {
		if k == g.rank {
			parts[k] = t
		} else {
			parts[k] = g.model.EncodeImage(er.in.Pixels, true)
		}
	}
	out := torch.Cat(parts, 0)
	return out, out.Err()
}

func sameValues(a, b *torch.Tensor) bool {
	if a.DType() != b.DType() || fmt.Sprint(a.Shape()) != fmt.Sprint(b.Shape()) {
		return false
	}
	x, err := a.ToDType(torch.Float64).Float64s()
	if err != nil {
		return false
	}
	y, err := b.ToDType(torch.Float64).Float64s()
	if err != nil {
		return false
	}
	for i := range x {
		if math.Abs(x[i]-y[i]) > 1e-6 {
			return false
		}
	}
	return true
}

// A rank killed mid-run makes the other exit non-zero within the group's timeout (the
// helpers' is 10 s), its error naming the collective that failed, not hang.
func TestKilledRankEndsTheOthers(t *testing.T) {
	cfg := distConfig(t, TaskPretrain, t.TempDir())
	cfg.MaxSteps = 40
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	port, err := freePort("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	type proc struct {
		cmd  *exec.Cmd
		out  *bytes.Buffer
		done chan error
	}
	var procs [2]proc
	steps := make(chan int, 100)
	for rank := range procs {
		env := torch.DistEnv{Rank: rank, WorldSize: 2, LocalRank: rank, MasterAddr: "127.0.0.1", MasterPort: port, GlooInterfaces: []string{"lo"}}
		cmd := exec.Command(os.Args[0], "-test.run", "^TestTrainHelperProcess$", "-test.v")
		cmd.Env = append(append(os.Environ(), env.Environ()...), trainHelperEnv+"="+string(raw))
		if rank == 1 {
			cmd.Env = append(cmd.Env, "CAPFILT_TRAIN_PAUSE_AT=3")
		}
		p := proc{cmd: cmd, out: &bytes.Buffer{}, done: make(chan error, 1)}
		var mu sync.Mutex
		write := func(b []byte) { mu.Lock(); p.out.Write(b); mu.Unlock() }
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = writerFunc(write)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill() })
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				var n int
				if _, err := fmt.Sscanf(sc.Text(), "STEP %d", &n); err == nil && rank == 1 {
					steps <- n
				}
				write([]byte(sc.Text() + "\n"))
			}
			p.done <- cmd.Wait()
		}()
		procs[rank] = p
	}
	for n := range steps {
		if n == 3 {
			break
		}
	}
	killed := time.Now()
	if err := procs[1].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-procs[0].done:
		if err == nil {
			t.Fatalf("rank 0 exited 0 after its peer died:\n%s", procs[0].out)
		}
		t.Logf("rank 0 exited (%v) %v after rank 1 was killed", err, time.Since(killed).Round(time.Millisecond))
		for _, line := range strings.Split(procs[0].out.String(), "\n") {
			if strings.Contains(line, "rank 0 of 2") {
				t.Logf("rank 0: %s", strings.TrimSpace(line))
			}
		}
		if !strings.Contains(procs[0].out.String(), "rank 0 of 2") {
			t.Errorf("rank 0's error does not name the failed collective:\n%s", procs[0].out)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("rank 0 still running 30 s after rank 1 was killed:\n%s", procs[0].out)
	}
}

type writerFunc func([]byte)

func (w writerFunc) Write(p []byte) (int, error) { w(p); return len(p), nil }

// A two-process job stopped after a checkpoint resumes with two processes (each from
// its own saved data position and random states) and ends where a job never stopped
// ends.
func TestTwoProcessJobResumes(t *testing.T) {
	straight := distConfig(t, TaskPretrain, t.TempDir())
	if log, err := launchHelpers(t, straight, 2); err != nil {
		t.Fatalf("%v\n%s", err, log)
	}
	stopped := straight
	stopped.Out, stopped.MaxSteps = t.TempDir(), 2
	if log, err := launchHelpers(t, stopped, 2); err != nil {
		t.Fatalf("%v\n%s", err, log)
	}
	resumed := stopped
	resumed.MaxSteps, resumed.Resume = straight.MaxSteps, true
	if log, err := launchHelpers(t, resumed, 2); err != nil {
		t.Fatalf("%v\n%s", err, log)
	}
	a, err := blip.ReadTensors(filepath.Join(straight.Out, modelFile))
	if err != nil {
		t.Fatal(err)
	}
	b, err := blip.ReadTensors(filepath.Join(resumed.Out, modelFile))
	if err != nil {
		t.Fatal(err)
	}
	worst, keyBias := 0.0, 0.0
	for name, x := range a {
		d, k := paramDiff(t, name, x, b[name])
		worst, keyBias = max(worst, d), max(keyBias, k)
	}
	t.Logf("resumed job vs straight job: %.3g (key biases %.3g)", worst, keyBias)
	if worst > 1e-5 || keyBias > straight.LR*float64(straight.MaxSteps) {
		t.Errorf("the resumed job's weights differ by %.3g (key biases %.3g)", worst, keyBias)
	}
}
