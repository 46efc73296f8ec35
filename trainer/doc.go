// Package trainer pretrains and finetunes BLIP on cleaned Parquet: loops, schedules,
// augmentation, checkpoints and evaluation.
package trainer
