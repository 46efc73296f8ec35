package trainer

import (
	"encoding/json"
	"fmt"

	"github.com/capfilt/capfilt/blip"
	"github.com/capfilt/capfilt/torch"
)

// Seed salts of the per-process torch generators (beside the data order's).
const (
	saltNegatives uint64 = iota + 101
	saltDropout
)

// pgGatherer is blip's GradGatherer over a c10d process group.
type pgGatherer struct{ pg *torch.ProcessGroup }

var _ blip.GradGatherer = pgGatherer{}

// gatherer is nil for one process (blip's convention).
func gatherer(pg *torch.ProcessGroup) blip.Gatherer {
	if pg == nil || pg.Size() == 1 {
		return nil
	}
	return pgGatherer{pg}
}

func (g pgGatherer) AllGather(t *torch.Tensor) (*torch.Tensor, error) {
	out := g.pg.AllGather(t)
	return out, out.Err()
}

// AllGatherWithGrad is retrieval's all_gather_with_grad (NegativeAllRank): the
// gradient of the result comes back to each rank's rows, summed over ranks.
func (g pgGatherer) AllGatherWithGrad(t *torch.Tensor) (*torch.Tensor, error) {
	out := g.pg.AllGatherWithGrad(t)
	return out, out.Err()
}

func (g pgGatherer) Rank() int      { return g.pg.Rank() }
func (g pgGatherer) WorldSize() int { return g.pg.Size() }

// gatherRankStates collects every process's rankState on every process (a collective:
// all ranks call it at the same step), in rank order.
func gatherRankStates(pg *torch.ProcessGroup, dev torch.Device, rs rankState) ([]rankState, error) {
	data, err := json.Marshal(rs)
	if err != nil {
		return nil, err
	}
	parts, err := gatherBytes(pg, dev, data)
	if err != nil {
		return nil, err
	}
	out := make([]rankState, len(parts))
	for i, p := range parts {
		if err := json.Unmarshal(p, &out[i]); err != nil {
			return nil, fmt.Errorf("state of rank %d: %w", i, err)
		}
	}
	return out, nil
}

// gatherBytes all-gathers one byte string per process: the lengths first, then the
// strings padded to the longest. NCCL gathers only device tensors: they go through dev.
func gatherBytes(pg *torch.ProcessGroup, dev torch.Device, data []byte) ([][]byte, error) {
	s := torch.NewScope()
	defer s.Close()
	onDevice := func(t *torch.Tensor) *torch.Tensor {
		t = s.Track(t)
		if pg.Backend() == torch.NCCL && dev != torch.CPU {
			t = t.ToDevice(dev)
		}
		return t
	}
	lens, err := pg.AllGather(onDevice(torch.FromInt64([]int64{int64(len(data))}, 1))).Int64s()
	if err != nil {
		return nil, fmt.Errorf("all-gather of state sizes: %w", err)
	}
	longest := int64(0)
	for _, n := range lens {
		longest = max(longest, n)
	}
	padded := make([]byte, longest)
	copy(padded, data)
	all, err := pg.AllGather(onDevice(torch.FromUint8(padded, 1, longest))).Uint8s()
	if err != nil {
		return nil, fmt.Errorf("all-gather of states: %w", err)
	}
	out := make([][]byte, len(lens))
	for i, n := range lens {
		out[i] = all[int64(i)*longest : int64(i)*longest+n]
	}
	return out, nil
}
