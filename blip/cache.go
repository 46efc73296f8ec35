package blip

import (
	"fmt"

	"github.com/capfilt/capfilt/torch"
)

// KVCache holds, for incremental decoding, every layer's self-attention keys and values
// of the positions decoded so far (in buffers sized once for the longest sequence) and
// its cross-attention keys and values of the image, computed on the first step only.
type KVCache struct {
	// Len is the number of positions cached.
	Len    int
	max    int
	layers []layerCache
	scope  *torch.Scope
}

type layerCache struct {
	self, cross kvPair
}

type kvPair struct {
	k, v   *torch.Tensor
	owner  *KVCache
	filled int64
}

// NewKVCache makes an empty cache for a model with layers text layers and sequences of
// at most maxLen positions. Close frees it.
func NewKVCache(layers, maxLen int) *KVCache {
	c := &KVCache{max: maxLen, layers: make([]layerCache, layers), scope: torch.NewScope()}
	for i := range c.layers {
		c.layers[i].self.owner = c
		c.layers[i].cross.owner = c
	}
	return c
}

// Close frees every cached tensor.
func (c *KVCache) Close() { c.scope.Close() }

func (p *kvPair) keep(t *torch.Tensor) *torch.Tensor { return p.owner.scope.Track(t) }

// append writes this step's keys and values [B, H, T, d] at positions past… and returns
// views of all positions so far.
func (p *kvPair) append(k, v *torch.Tensor, past int64) (*torch.Tensor, *torch.Tensor, error) {
	if err := k.Err(); err != nil {
		return nil, nil, err
	}
	s := k.Shape()
	t := s[2]
	if past+t > int64(p.owner.max) {
		return nil, nil, fmt.Errorf("kv cache: %d positions exceed its %d", past+t, p.owner.max)
	}
	if p.k == nil {
		p.k = p.keep(torch.Zeros(k.DType(), k.Device(), s[0], s[1], int64(p.owner.max), s[3]))
		p.v = p.keep(torch.Zeros(v.DType(), v.Device(), s[0], s[1], int64(p.owner.max), s[3]))
	}
	if past != p.filled {
		return nil, nil, fmt.Errorf("kv cache: writing position %d after %d filled", past, p.filled)
	}
	sc := k.Scope()
	kb, vb := sc.Ref(p.k), sc.Ref(p.v)
	if err := kb.Narrow(2, past, t).CopyFrom(k); err != nil {
		return nil, nil, err
	}
	if err := vb.Narrow(2, past, t).CopyFrom(v); err != nil {
		return nil, nil, err
	}
	p.filled = past + t
	return kb.Narrow(2, 0, past+t), vb.Narrow(2, 0, past+t), nil
}

// Reorder keeps, for every row, the cached state of row index[row] (beam search moves
// hypotheses between beams of one image). Cross-attention entries are per image and stay.
func (c *KVCache) Reorder(index *torch.Tensor) error {
	for i := range c.layers {
		p := &c.layers[i].self
		if p.k == nil {
			continue
		}
		nk := c.scope.Track(p.k.IndexSelect(0, index))
		nv := c.scope.Track(p.v.IndexSelect(0, index))
		if err := nk.Err(); err != nil {
			return err
		}
		if err := nv.Err(); err != nil {
			return err
		}
		p.k.Free()
		p.v.Free()
		p.k, p.v = nk, nv
	}
	return nil
}
