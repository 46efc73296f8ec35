// Package trainer pretrains and finetunes BLIP on cleaned Parquet: loops, schedules,
// augmentation, checkpoints and evaluation.
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
