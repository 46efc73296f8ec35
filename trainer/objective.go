package trainer

import (
	"fmt"

	"github.com/capfilt/capfilt/blip"
	"github.com/capfilt/capfilt/torch"
)

// objective is one task's step over blip's trainers, and what it keeps between steps
// (the momentum model and the queues) for checkpoints.
type objective interface {
	losses(s *torch.Scope, b blip.Batch, o blip.StepOptions) (blip.Losses, error)
	// state names the tensors a checkpoint saves (views of the live ones); nil for none.
	state() map[string]*torch.Tensor
	setState(map[string]*torch.Tensor) error
	stateful() bool
	// negatives is the generator the hard negatives draw from (nil: none).
	negatives() *torch.Generator
	close()
}

// newObjective wraps the task's blip trainer around m. Queues draw their initial
// values from g; hard negatives from neg; gather is nil for one process.
func newObjective(c Config, m *blip.Model, promptLen int, g, neg *torch.Generator, gather blip.Gatherer) (objective, error) {
	switch c.Task {
	case TaskPretrain:
		p, err := blip.NewPretrainer(m, c.QueueSize, g)
		if err != nil {
			return nil, err
		}
		p.Momentum.Rate, p.Gather, p.Negatives = c.Momentum, gather, neg
		return &pretrainObjective{p}, nil
	case TaskRetrieval:
		r, err := blip.NewRetrievalTrainer(m, c.QueueSize, g)
		if err != nil {
			return nil, err
		}
		r.Momentum.Rate, r.Gather, r.Negatives, r.NegativeAllRank = c.Momentum, gather, neg, c.NegativeAllRank
		return &retrievalObjective{r}, nil
	case TaskCaption:
		return &captionObjective{blip.CaptionTrainer{Model: m, PromptLen: promptLen}}, nil
	}
	return nil, fmt.Errorf("trainer: task %q", c.Task)
}

type pretrainObjective struct{ p *blip.Pretrainer }

func (o *pretrainObjective) losses(s *torch.Scope, b blip.Batch, so blip.StepOptions) (blip.Losses, error) {
	return o.p.Losses(s, b, so)
}
func (o *pretrainObjective) state() map[string]*torch.Tensor {
	return joinState(o.p.Momentum.State(), o.p.Queues.State())
}
func (o *pretrainObjective) setState(st map[string]*torch.Tensor) error {
	if err := o.p.Momentum.SetState(st); err != nil {
		return err
	}
	return o.p.Queues.SetState(st)
}
func (o *pretrainObjective) stateful() bool              { return true }
func (o *pretrainObjective) negatives() *torch.Generator { return o.p.Negatives }
func (o *pretrainObjective) close()                      { o.p.Close() }

type retrievalObjective struct{ r *blip.RetrievalTrainer }

func (o *retrievalObjective) losses(s *torch.Scope, b blip.Batch, so blip.StepOptions) (blip.Losses, error) {
	return o.r.Losses(s, b, so)
}
func (o *retrievalObjective) state() map[string]*torch.Tensor {
	return joinState(o.r.Momentum.State(), o.r.Queues.State())
}
func (o *retrievalObjective) setState(st map[string]*torch.Tensor) error {
	if err := o.r.Momentum.SetState(st); err != nil {
		return err
	}
	return o.r.Queues.SetState(st)
}
func (o *retrievalObjective) stateful() bool              { return true }
func (o *retrievalObjective) negatives() *torch.Generator { return o.r.Negatives }
func (o *retrievalObjective) close()                      { o.r.Close() }

type captionObjective struct{ c blip.CaptionTrainer }

func (o *captionObjective) losses(s *torch.Scope, b blip.Batch, so blip.StepOptions) (blip.Losses, error) {
	return o.c.Losses(s, b, so)
}
func (o *captionObjective) state() map[string]*torch.Tensor         { return nil }
func (o *captionObjective) setState(map[string]*torch.Tensor) error { return nil }
func (o *captionObjective) stateful() bool                          { return false }
func (o *captionObjective) negatives() *torch.Generator             { return nil }
func (o *captionObjective) close()                                  {}

func joinState(a, b map[string]*torch.Tensor) map[string]*torch.Tensor {
	for k, v := range b {
		a[k] = v
	}
	return a
}
