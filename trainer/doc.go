// Package trainer pretrains and finetunes BLIP on cleaned Parquet: loops, schedules,
// augmentation, checkpoints and evaluation.
//
// Training. Train(ctx, Config, Hooks) runs one of the three tasks of blip-spec §6–§7
// over blip's trainers: TaskPretrain (ITC with momentum distillation and queues, ITM with
// hard negatives, LM), TaskCaption (the captioner's LM finetune) and TaskRetrieval (the
// filter's ITC + ITM finetune). DefaultConfig(task) is the paper's recipe; every
// scaled-down value is a field. Config.LearningRate is the original scripts' schedule
// (warm-up then per-epoch step decay; per-epoch cosine). A step: set the rate, zero the
// gradients, the losses on a batch from the loader, backward (with Config.Dist, the
// gradients averaged over processes as they become ready, torch.GradSync), AdamW; every
// tensor it makes is freed when it ends, and the run's goroutine is locked to one OS
// thread.
//
// Checkpoints. The model is written in the HF layout at Config.Out's root (what capfilt
// run --model loads) and, beside it, train_state/ holds the optimizer, the momentum model
// and queues, the step, every process's random states (libtorch's default generator,
// which dropout draws from, and the hard negatives' own) and data position: written into
// a temporary folder and renamed, so a run killed at any moment resumes (Config.Resume)
// bit for bit from its last checkpoint. A resume with other settings, data or world
// size is refused, naming what differs.
//
// Evaluation. EvalRetrieval (ITC top-K re-ranked by ITM, R@1/5/10) and EvalCaption (beam
// search, BLEU-1..4 and CIDEr-D) run a model on an EvalSet (COCO annotations or BLIP's
// image list with an image folder).
//
// Data. OpenDataset indexes the --data sources (cleaned Parquet from `capfilt run`, raw
// web shards, COCO-style JSON with an image folder), counting every file's samples
// without decoding an image, so the epoch length is known before the first step.
// Dataset.Epoch streams one rank's share of an epoch as Batches: pixels decoded and
// augmented (imageproc.TrainTransform) by a worker pool ahead of the step, captions
// drawn and cleaned with pre_caption. The order and every random draw are functions of
// (seed, epoch, rank, world), so a Batch's DataPosition, saved with a checkpoint,
// resumes the stream at exactly the next batch. Bad samples are skipped and counted by
// reason (EpochStats). The data files hold no tensors; the loop turns Batches into them.
//
// Evaluation metrics live in trainer/eval.
package trainer
