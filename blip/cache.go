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

// Retain keeps len(units) images of the cache: image j takes the entries of image
// units[j], whose groups consecutive rows (beams or samples of one image) move with it.
// Every units[j] must be an image that is kept, so that only the places of images left
// out are written over: the state moves image by image, each copied at most once, and
// the buffers shrink to the kept rows without being reallocated.
func (c *KVCache) Retain(units []int64, groups int) error {
	if groups < 1 {
		groups = 1
	}
	n := int64(len(units))
	g := int64(groups)
	move := func(t *torch.Tensor, per int64) (*torch.Tensor, error) {
		if t == nil {
			return nil, nil
		}
		s := c.scope.Child()
		defer s.Close()
		x := s.Ref(t)
		for j, src := range units {
			if src == int64(j) {
				continue
			}
			if src < 0 || src*per >= x.Size(0) {
				return nil, fmt.Errorf("kv cache: image %d to keep, of %d rows in groups of %d", src, x.Size(0), per)
			}
			if err := x.Narrow(0, int64(j)*per, per).CopyFrom(x.Narrow(0, src*per, per)); err != nil {
				return nil, err
			}
		}
		kept := c.scope.Track(x.Narrow(0, 0, n*per))
		if err := kept.Err(); err != nil {
			return nil, err
		}
		t.Free()
		return kept, nil
	}
	for i := range c.layers {
		for _, kv := range []struct {
			p   *kvPair
			per int64
		}{{&c.layers[i].self, g}, {&c.layers[i].cross, 1}} {
			var err error
			if kv.p.k, err = move(kv.p.k, kv.per); err != nil {
				return err
			}
			if kv.p.v, err = move(kv.p.v, kv.per); err != nil {
				return err
			}
		}
	}
	return nil
}
