package trainer

import (
	"context"
	"errors"
)

// Train runs cfg to its end (or MaxSteps) and returns what it did. The model is in
// cfg.Out in the HF layout after every checkpoint.
func Train(ctx context.Context, cfg Config, hooks Hooks) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return nil, errors.New("trainer: Train is not implemented yet")
}
