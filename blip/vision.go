package blip

import (
	"fmt"
	"sync"

	"github.com/capfilt/capfilt/torch"
)

// VisionModel is BLIP's ViT: patch embedding, class token, position embedding, pre-LN
// blocks and a final LayerNorm. Its output keeps every token: they are the memory the
// text transformer's cross attention reads.
type VisionModel struct {
	Embeddings    VisionEmbeddings
	Encoder       VisionEncoder
	PostLayernorm LayerNorm

	cfg      VisionConfig
	posMu    sync.Mutex
	posCache map[int]*torch.Tensor // position embeddings interpolated to other grids
}

type VisionEmbeddings struct {
	ClassEmbedding    *torch.Tensor // [1, 1, D]
	PositionEmbedding *torch.Tensor // [1, 1+N, D]
	PatchEmbedding    Linear        // a Conv2d(3→D, kernel = stride = patch): weight [D, 3, P, P]
}

type VisionEncoder struct {
	Layers []*VisionLayer
}

// VisionLayer is one pre-LN block: x += Attn(LN1(x)); x += MLP(LN2(x)).
type VisionLayer struct {
	LayerNorm1 LayerNorm
	SelfAttn   VisionAttention
	LayerNorm2 LayerNorm
	MLP        MLP
}

// VisionAttention computes q, k and v with one Linear whose output rows are [q | k | v].
type VisionAttention struct {
	QKV        Linear
	Projection Linear
	heads      int
}

type MLP struct {
	FC1, FC2 Linear
}

func newVisionModel(c VisionConfig) *VisionModel {
	m := &VisionModel{cfg: c, posCache: map[int]*torch.Tensor{}}
	m.PostLayernorm.Eps = c.LayerNormEps
	for i := 0; i < c.NumLayers; i++ {
		l := &VisionLayer{SelfAttn: VisionAttention{heads: c.NumHeads}}
		l.LayerNorm1.Eps, l.LayerNorm2.Eps = c.LayerNormEps, c.LayerNormEps
		m.Encoder.Layers = append(m.Encoder.Layers, l)
	}
	return m
}

func (m *VisionModel) register(ps *paramSet, prefix string) {
	c := m.cfg
	d, p := int64(c.HiddenSize), int64(c.PatchSize)
	ps.add(prefix+".embeddings.class_embedding", &m.Embeddings.ClassEmbedding, 1, 1, d)
	ps.add(prefix+".embeddings.position_embedding", &m.Embeddings.PositionEmbedding, 1, 1+int64(c.NumPatches()), d)
	ps.add(prefix+".embeddings.patch_embedding.weight", &m.Embeddings.PatchEmbedding.Weight, d, 3, p, p)
	ps.add(prefix+".embeddings.patch_embedding.bias", &m.Embeddings.PatchEmbedding.Bias, d)
	for i, l := range m.Encoder.Layers {
		n := fmt.Sprintf("%s.encoder.layers.%d", prefix, i)
		l.LayerNorm1.register(ps, n+".layer_norm1", c.HiddenSize)
		l.SelfAttn.QKV.register(ps, n+".self_attn.qkv", 3*c.HiddenSize, c.HiddenSize)
		l.SelfAttn.Projection.register(ps, n+".self_attn.projection", c.HiddenSize, c.HiddenSize)
		l.LayerNorm2.register(ps, n+".layer_norm2", c.HiddenSize)
		l.MLP.FC1.register(ps, n+".mlp.fc1", c.IntermediateSize, c.HiddenSize)
		l.MLP.FC2.register(ps, n+".mlp.fc2", c.HiddenSize, c.IntermediateSize)
	}
	m.PostLayernorm.register(ps, prefix+".post_layernorm", c.HiddenSize)
}

// Forward maps pixels [B, 3, S, S] (normalised) to hidden states [B, 1+(S/P)², D].
// Any S divisible by the patch size works: the position embedding is interpolated to
// the grid (bicubic, as at checkpoint load) when it differs from the trained one.
func (m *VisionModel) Forward(pixels *torch.Tensor, train bool) *torch.Tensor {
	s := pixels.Shape()
	if len(s) != 4 || s[1] != 3 || s[2] != s[3] || s[2]%int64(m.cfg.PatchSize) != 0 {
		return torch.Failed(fmt.Errorf("vision: pixel_values shape %v, want [B, 3, S, S] with S a multiple of %d", s, m.cfg.PatchSize))
	}
	b, d := s[0], int64(m.cfg.HiddenSize)
	grid := s[2] / int64(m.cfg.PatchSize)
	pos, err := m.positionEmbedding(int(grid))
	if err != nil {
		return torch.Failed(err)
	}
	// The pass has a scope of its own and frees each layer's input once the layer is
	// done: only the output leaves. (Autograd keeps what backward needs by itself.)
	pass := pixels.Scope().Child()
	defer pass.Close()
	x := pass.Ref(pixels).Conv2d(m.Embeddings.PatchEmbedding.Weight, m.Embeddings.PatchEmbedding.Bias, int64(m.cfg.PatchSize), 0)
	x = x.Reshape(b, d, grid*grid).Transpose(1, 2) // row-major over the grid: y, then x
	cls := pass.Ref(m.Embeddings.ClassEmbedding).Expand(b, 1, d)
	x = torch.Cat([]*torch.Tensor{cls, x}, 1).Add(pos)
	n := len(m.Encoder.Layers)
	for i, l := range m.Encoder.Layers {
		rate := 0.0
		if n > 1 {
			rate = m.cfg.DropPath * float64(i) / float64(n-1)
		}
		next := l.Forward(x, train, rate)
		x.Free()
		x = next
	}
	return pass.Keep(m.PostLayernorm.Forward(x))
}

func (l *VisionLayer) Forward(x *torch.Tensor, train bool, dropPath float64) *torch.Tensor {
	h := residual(x, func(x *torch.Tensor) *torch.Tensor {
		return dropPathOf(l.SelfAttn.Forward(l.LayerNorm1.Forward(x)), dropPath, train)
	})
	out := residual(h, func(h *torch.Tensor) *torch.Tensor {
		return dropPathOf(l.MLP.FC2.Forward(l.MLP.FC1.Forward(l.LayerNorm2.Forward(h)).Gelu()), dropPath, train)
	})
	h.Free()
	return out
}

// residual is x + branch(x), the branch computed in a child scope of x's so that its
// intermediates are freed as soon as the sum exists.
func residual(x *torch.Tensor, branch func(*torch.Tensor) *torch.Tensor) *torch.Tensor {
	s := x.Scope().Child()
	defer s.Close()
	return s.Keep(x.Add(branch(s.Ref(x))))
}

func (a *VisionAttention) Forward(x *torch.Tensor) *torch.Tensor {
	s := x.Shape()
	if len(s) != 3 {
		if err := x.Err(); err != nil {
			return torch.Failed(err)
		}
		return torch.Failed(fmt.Errorf("vision attention: want [B,N,D], got shape %v", s))
	}
	b, n, d := s[0], s[1], s[2]
	qkv := a.QKV.Forward(x).View(b, n, 3, int64(a.heads), d/int64(a.heads)).Permute(2, 0, 3, 1, 4)
	out := torch.Attention(qkv.Select(0, 0), qkv.Select(0, 1), qkv.Select(0, 2), nil, false, 0, torch.AttentionBest)
	return a.Projection.Forward(mergeHeads(out))
}

// dropPathOf zeroes a whole sample's residual branch with probability rate (training
// only), scaling the kept ones by 1/(1-rate): stochastic depth.
func dropPathOf(x *torch.Tensor, rate float64, train bool) *torch.Tensor {
	if !train || rate <= 0 {
		return x
	}
	s := x.Shape()
	keep := x.Scope().Track(torch.Rand(nil, torch.Float32, x.Device(), s[0], 1, 1)).GeScalar(rate).ToDType(x.DType()).DivScalar(1 - rate)
	return x.Mul(keep)
}

// positionEmbedding returns the position embedding for a grid×grid image, interpolated
// once per grid size and cached.
func (m *VisionModel) positionEmbedding(grid int) (*torch.Tensor, error) {
	pe := m.Embeddings.PositionEmbedding
	if err := pe.Err(); err != nil {
		return nil, err
	}
	trained := m.cfg.ImageSize / m.cfg.PatchSize
	if grid == trained {
		return pe, nil
	}
	m.posMu.Lock()
	defer m.posMu.Unlock()
	if t, ok := m.posCache[grid]; ok {
		return t, nil
	}
	t, err := interpolatePositions(pe, grid)
	if err != nil {
		return nil, err
	}
	m.posCache[grid] = t
	return t, nil
}

// dropPositionCache frees the interpolated position embeddings (after the weights change).
func (m *VisionModel) dropPositionCache() {
	m.posMu.Lock()
	defer m.posMu.Unlock()
	for k, t := range m.posCache {
		t.Free()
		delete(m.posCache, k)
	}
}
