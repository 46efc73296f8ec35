package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/capfilt/capfilt/torch"
	"github.com/capfilt/capfilt/trainer"
)

func newTrainCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "train",
		Short: "Pretrain BLIP, or finetune its captioner or filter, on cleaned Parquet, web shards or COCO-style sets",
		Long: `Trains BLIP as the paper does (blip-spec §6-§7): AdamW with weight decay 0.05 on every parameter;
pretraining warms the learning rate up over the first steps of epoch 0, then multiplies it by
--lr-decay-rate per epoch; the finetunes follow a cosine per epoch.

The model lands in --out in the Hugging Face layout (config.json, model.safetensors,
vocab.txt), ready for capfilt run --model, at every checkpoint (--save-every steps and each
epoch's end); beside it train_state/ holds what --resume needs to continue bit for bit, and
train_log.jsonl one record per --log-every steps.

Data-parallel: started by torchrun (or srun, a PyTorchJob operator: anything that sets RANK,
WORLD_SIZE, MASTER_ADDR, MASTER_PORT) each process takes its share of the data; with
--nproc-per-node N capfilt starts the N local processes itself. Gloo on the CPU, NCCL on CUDA;
only rank 0 writes; --out must be shared by the processes for --resume.`,
	}
	cmd.AddCommand(newTrainTaskCommand(a, trainer.TaskPretrain,
		"Pretrain: ITC with momentum distillation and queues, ITM with hard negatives, LM",
		`ITC against a momentum model's features and feature queues, with momentum distillation (alpha
ramped over two epochs); ITM on hard negatives drawn from the contrastive similarities; LM with
label smoothing 0.1 through the decoder that shares every text weight but self-attention with
the encoder. loss = ITC + ITM + LM. Fresh models (--init tiny|base|large|config.json) start
random; --init-vision and --init-text give them the paper's DeiT and BERT towers.`),
		newTrainTaskCommand(a, trainer.TaskCaption,
			"Finetune the captioner: LM on the vision model and the decoder, the prompt left out of the loss",
			`The captioner of CapFilt: BLIP_Decoder (vision model + image-grounded decoder) trained with LM on
"a picture of " + caption, the prompt's tokens excluded from the loss, cosine learning rate.
Starting from a pretrained checkpoint the decoder takes its weights (its own from then on).`),
		newTrainTaskCommand(a, trainer.TaskRetrieval,
			"Finetune the filter: ITC with same-image positives and ITM with hard negatives",
			`The filter of CapFilt: BLIP_Retrieval (vision model, text encoder, projections, ITM head)
trained with ITC (every batch and queue entry of the same image is a positive; alpha ramped over
epoch 0) and ITM on hard negatives, cosine learning rate.`))
	return cmd
}

func newTrainTaskCommand(a *app, task trainer.Task, short, long string) *cobra.Command {
	o := &trainOptions{}
	cmd := &cobra.Command{
		Use:   string(task) + " --data SOURCE --init CHECKPOINT|PRESET --out DIR [--resume]",
		Short: short,
		Long:  long,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := o.config(a, task)
			if err != nil {
				return err
			}
			return a.train(cmd.Context(), o, cfg)
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

// train runs one process of a training job: alone, as one rank of a launched job, or,
// with --nproc-per-node, as the launcher of the local ranks.
func (a *app) train(parent context.Context, o *trainOptions, cfg trainer.Config) error {
	if parent == nil {
		parent = context.Background()
	}
	ctx, stop := signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
	defer stop()
	env, err := torch.DistEnvFromEnv()
	switch {
	case errors.Is(err, torch.ErrNoDistEnv) && o.NProcPerNode > 1:
		return a.launchLocal(ctx, o)
	case errors.Is(err, torch.ErrNoDistEnv):
	case err != nil:
		return usagef("%v", err)
	default:
		if o.device.Device == "cuda" { // no index: each local rank takes its own GPU
			cfg.Device = torch.CUDA(env.LocalRank)
		}
		backend := torch.Gloo
		if cfg.Device.CUDA {
			backend = torch.NCCL
		}
		pg, err := torch.NewProcessGroup(torch.DistConfig{DistEnv: env, Backend: backend, Timeout: o.DistTimeout})
		if err != nil {
			return err
		}
		defer pg.Close()
		cfg.Dist = pg
		a.log.Debug("joined the process group", "rank", env.Rank, "world", env.WorldSize, "backend", backend)
	}
	rank0 := cfg.Dist == nil || cfg.Dist.Rank() == 0
	hooks := trainer.Hooks{Log: a.log}
	var bar *progressbar.ProgressBar
	if rank0 {
		hooks.Progress = func(p trainer.Progress) {
			if bar == nil {
				bar = progressbar.NewOptions(p.Steps, progressbar.OptionSetWriter(a.stderr), progressbar.OptionShowCount(),
					progressbar.OptionSetPredictTime(false), progressbar.OptionThrottle(200*time.Millisecond),
					progressbar.OptionSetWidth(20), progressbar.OptionOnCompletion(func() { fmt.Fprintln(a.stderr) }))
			}
			bar.Describe(describeStep(p))
			bar.Set(p.Step)
		}
	}
	res, err := trainer.Train(ctx, cfg, hooks)
	if err != nil {
		var ps trainer.Problems
		if errors.As(err, &ps) {
			return a.trainProblems(ps)
		}
		return err
	}
	if bar != nil {
		bar.Finish()
	}
	if rank0 {
		a.printf("trained %s: %d steps, %d epochs; model in %s (capfilt run --model %s), log in %s\n", cfg.Task,
			res.Steps, res.Epochs, res.Dir, res.Dir, res.Dir+"/train_log.jsonl")
	}
	return nil
}

// describeStep is the progress bar's text: epoch, losses, learning rate, speed, ETA.
func describeStep(p trainer.Progress) string {
	loss := fmt.Sprintf("loss %.3f", p.Loss.Total)
	if p.Loss.ITC != 0 || p.Loss.ITM != 0 {
		loss += fmt.Sprintf(" (itc %.3f itm %.3f", p.Loss.ITC, p.Loss.ITM)
		if p.Loss.LM != 0 {
			loss += fmt.Sprintf(" lm %.3f", p.Loss.LM)
		}
		loss += ")"
	}
	return fmt.Sprintf("epoch %d/%d %s lr %.2e %.1f img/s ETA %s", p.Epoch+1, p.Epochs, loss, p.LR, p.ImagesPerSec,
		p.ETA.Round(time.Second))
}

// launchLocal starts --nproc-per-node copies of this command as the ranks of one job
// and waits for them; each reads its rank from the environment, as under torchrun.
func (a *app) launchLocal(ctx context.Context, o *trainOptions) error {
	args := strings.Fields(a.cmd.CommandPath())[1:]
	a.cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if !f.Changed {
			return
		}
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			for _, v := range sv.GetSlice() {
				args = append(args, "--"+f.Name+"="+v)
			}
			return
		}
		args = append(args, "--"+f.Name+"="+f.Value.String())
	})
	a.log.Info("starting the local processes", "processes", o.NProcPerNode)
	err := trainer.LaunchLocal(ctx, trainer.LaunchConfig{Procs: o.NProcPerNode, Args: args, Stdout: a.stdout, Stderr: a.stderr,
		Grace: o.DistTimeout + 10*time.Second})
	if err != nil {
		return fmt.Errorf("train (%d processes): %w", o.NProcPerNode, err)
	}
	return nil
}
