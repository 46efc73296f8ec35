package blip

import (
	"fmt"

	"github.com/capfilt/capfilt/torch"
)

// FeatureQueues hold the momentum features of earlier steps: ITC compares every image
// (text) with the batch's momentum texts (images) and with these. Columns are features.
type FeatureQueues struct {
	Image, Text *torch.Tensor // [E, Q] float, unit columns
	// IDs [1, Q] int64 holds each entry's image id (retrieval finetune; -100 = none
	// yet); nil in pretraining.
	IDs *torch.Tensor
	// Ptr is the next column to write; it advances by the global batch and wraps at Q.
	Ptr int64
}

// NewFeatureQueues draws both queues N(0,1) (image first, from g; nil = libtorch's
// default generator) and normalises every column, as the original; withIDs adds the
// retrieval id queue filled with -100.
func NewFeatureQueues(embedDim, size int, withIDs bool, g *torch.Generator, dev torch.Device) (*FeatureQueues, error) {
	if embedDim <= 0 || size <= 0 {
		return nil, fmt.Errorf("blip: feature queue of %d×%d", embedDim, size)
	}
	e, q := int64(embedDim), int64(size)
	fq := &FeatureQueues{}
	draw := func() *torch.Tensor {
		r := torch.Randn(g, torch.Float32, torch.CPU, e, q)
		n := r.Normalize(0, 1e-12)
		r.Free()
		d := n.ToDevice(dev)
		if d != n {
			n.Free()
		}
		return d
	}
	fq.Image, fq.Text = draw(), draw()
	if withIDs {
		fq.IDs = torch.Full(ignoreIndex, torch.Int64, dev, 1, q)
	}
	for _, t := range []*torch.Tensor{fq.Image, fq.Text, fq.IDs} {
		if t != nil && t.Err() != nil {
			fq.Close()
			return nil, fmt.Errorf("blip: feature queues: %w", t.Err())
		}
	}
	return fq, nil
}

// Size is Q, the number of columns.
func (q *FeatureQueues) Size() int64 { return q.Image.Size(1) }

// Enqueue writes this step's momentum features [B, E] (and image ids [B] when the queue
// keeps them) at the pointer, gathered over every process first, and advances the
// pointer by the global batch. The queue size must be divisible by that batch.
func (q *FeatureQueues) Enqueue(image, text, ids *torch.Tensor, gather Gatherer) error {
	s := torch.NewScope()
	defer s.Close()
	image, text = s.Ref(image), s.Ref(text)
	if ids != nil {
		ids = s.Ref(ids)
	}
	if worldSize(gather) > 1 {
		for _, t := range []**torch.Tensor{&image, &text, &ids} {
			if *t == nil {
				continue
			}
			g, err := gather.AllGather(*t)
			if err != nil {
				return fmt.Errorf("blip: queue write: all-gather: %w", err)
			}
			*t = s.Track(g)
		}
	}
	b, qs := image.Size(0), q.Size()
	if b == 0 || qs%b != 0 {
		return fmt.Errorf("blip: queue size %d is not divisible by the global batch %d", qs, b)
	}
	if q.Ptr+b > qs {
		return fmt.Errorf("blip: queue pointer %d + batch %d runs past the queue (%d): the global batch changed", q.Ptr, b, qs)
	}
	if err := s.Ref(q.Image).Narrow(1, q.Ptr, b).CopyFrom(image.Transpose(0, 1)); err != nil {
		return fmt.Errorf("blip: image queue write: %w", err)
	}
	if err := s.Ref(q.Text).Narrow(1, q.Ptr, b).CopyFrom(text.Transpose(0, 1)); err != nil {
		return fmt.Errorf("blip: text queue write: %w", err)
	}
	if q.IDs != nil {
		if ids == nil {
			return fmt.Errorf("blip: this queue keeps image ids; none given")
		}
		if err := s.Ref(q.IDs).Narrow(1, q.Ptr, b).CopyFrom(ids.View(1, b)); err != nil {
			return fmt.Errorf("blip: id queue write: %w", err)
		}
	}
	q.Ptr = (q.Ptr + b) % qs
	return nil
}

// State maps the queues under the original's buffer names (image_queue, text_queue,
// idx_queue, queue_ptr); the tensors are the live queues, queue_ptr a new one.
func (q *FeatureQueues) State() map[string]*torch.Tensor {
	out := map[string]*torch.Tensor{"image_queue": q.Image, "text_queue": q.Text,
		"queue_ptr": torch.FromInt64([]int64{q.Ptr}, 1)}
	if q.IDs != nil {
		out["idx_queue"] = q.IDs
	}
	return out
}

// SetState copies values saved by State back (resume).
func (q *FeatureQueues) SetState(state map[string]*torch.Tensor) error {
	names := []string{"image_queue", "text_queue"}
	dst := []*torch.Tensor{q.Image, q.Text}
	if q.IDs != nil {
		names, dst = append(names, "idx_queue"), append(dst, q.IDs)
	}
	for i, n := range names {
		t, ok := state[n]
		if !ok {
			return fmt.Errorf("blip: queue state has no %s", n)
		}
		if err := t.MustShape("blip: queue state "+n, dst[i].Shape()...); err != nil {
			return err
		}
		if err := dst[i].CopyFrom(t); err != nil {
			return fmt.Errorf("blip: queue state %s: %w", n, err)
		}
	}
	p, ok := state["queue_ptr"]
	if !ok {
		return fmt.Errorf("blip: queue state has no queue_ptr")
	}
	v, err := p.Item()
	if err != nil {
		return fmt.Errorf("blip: queue state queue_ptr: %w", err)
	}
	if v < 0 || int64(v) >= q.Size() {
		return fmt.Errorf("blip: queue state queue_ptr %v outside the queue (%d)", v, q.Size())
	}
	q.Ptr = int64(v)
	return nil
}

// Close frees the queues.
func (q *FeatureQueues) Close() {
	for _, t := range []*torch.Tensor{q.Image, q.Text, q.IDs} {
		if t != nil {
			t.Free()
		}
	}
}
