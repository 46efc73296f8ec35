package blip

import (
	"fmt"

	"github.com/capfilt/capfilt/torch"
)

// TextModel is the MED text transformer: BERT-base, post-LN, with a cross-attention
// sublayer in every layer. One set of weights serves three modes, chosen by the first
// token and the mask: unimodal encoder ([CLS], no image), image-grounded encoder ([ENC],
// cross attention on), image-grounded decoder ([DEC], causal mask).
type TextModel struct {
	Embeddings *TextEmbeddings
	Encoder    TextEncoder

	cfg TextConfig
}

// TextEmbeddings: word + absolute position, then LayerNorm. BLIP has no token types.
type TextEmbeddings struct {
	WordEmbeddings     *torch.Tensor // [V, D]
	PositionEmbeddings *torch.Tensor // [P, D]
	LayerNorm          LayerNorm
}

type TextEncoder struct {
	Layer []*TextLayer
}

// TextLayer is one post-LN layer:
//
//	a = LN(x + SelfAtt(x));  c = LN(a + CrossAtt(a, image));  y = LN(c + FFN(c))
type TextLayer struct {
	Attention      AttentionBlock
	Crossattention *AttentionBlock // nil in a text-only model
	Intermediate   *Intermediate
	Output         *LayerOutput
}

type Intermediate struct{ Dense Linear }

type LayerOutput struct {
	Dense     Linear
	LayerNorm LayerNorm
}

// AttentionBlock is BERT's attention sublayer with its residual and LayerNorm.
type AttentionBlock struct {
	Self struct {
		Query, Key, Value Linear
	}
	Output struct {
		Dense     Linear
		LayerNorm LayerNorm
	}
	heads int
}

func newTextModel(c TextConfig, crossAttention bool) *TextModel {
	m := &TextModel{cfg: c, Embeddings: &TextEmbeddings{}}
	m.Embeddings.LayerNorm.Eps = c.LayerNormEps
	for i := 0; i < c.NumLayers; i++ {
		l := &TextLayer{Attention: AttentionBlock{heads: c.NumHeads}, Intermediate: &Intermediate{}, Output: &LayerOutput{}}
		l.Attention.Output.LayerNorm.Eps = c.LayerNormEps
		l.Output.LayerNorm.Eps = c.LayerNormEps
		if crossAttention {
			l.Crossattention = &AttentionBlock{heads: c.NumHeads}
			l.Crossattention.Output.LayerNorm.Eps = c.LayerNormEps
		}
		m.Encoder.Layer = append(m.Encoder.Layer, l)
	}
	return m
}

// shareAllButSelfAttention makes m use other's embeddings, cross attention and
// feed-forward weights: BLIP pretraining ties encoder and decoder everywhere except
// the self-attention sublayer (attention.self.* and attention.output.*).
func (m *TextModel) shareAllButSelfAttention(other *TextModel) {
	m.Embeddings = other.Embeddings
	for i, l := range m.Encoder.Layer {
		o := other.Encoder.Layer[i]
		l.Crossattention = o.Crossattention
		l.Intermediate = o.Intermediate
		l.Output = o.Output
	}
}

func (m *TextModel) register(ps *paramSet, prefix string) {
	c := m.cfg
	d := c.HiddenSize
	ps.add(prefix+".embeddings.word_embeddings.weight", &m.Embeddings.WordEmbeddings, int64(c.VocabSize), int64(d))
	ps.add(prefix+".embeddings.position_embeddings.weight", &m.Embeddings.PositionEmbeddings, int64(c.MaxPositions), int64(d))
	m.Embeddings.LayerNorm.register(ps, prefix+".embeddings.LayerNorm", d)
	for i, l := range m.Encoder.Layer {
		n := fmt.Sprintf("%s.encoder.layer.%d", prefix, i)
		l.Attention.register(ps, n+".attention", d, d)
		if l.Crossattention != nil {
			l.Crossattention.register(ps, n+".crossattention", d, c.EncoderHiddenSize)
		}
		l.Intermediate.Dense.register(ps, n+".intermediate.dense", c.IntermediateSize, d)
		l.Output.Dense.register(ps, n+".output.dense", d, c.IntermediateSize)
		l.Output.LayerNorm.register(ps, n+".output.LayerNorm", d)
	}
}

func (a *AttentionBlock) register(ps *paramSet, name string, d, kvIn int) {
	a.Self.Query.register(ps, name+".self.query", d, d)
	a.Self.Key.register(ps, name+".self.key", d, kvIn)
	a.Self.Value.register(ps, name+".self.value", d, kvIn)
	a.Output.Dense.register(ps, name+".output.dense", d, d)
	a.Output.LayerNorm.register(ps, name+".output.LayerNorm", d)
}

// TextInput is one batch for the text transformer.
type TextInput struct {
	IDs *torch.Tensor // [B, T] int64; position 0 holds the mode token
	// Mask is [B, T] (or [B, past+T] with a cache): 1 where a key may be attended. nil: all.
	Mask *torch.Tensor
	// Image is the cross-attention memory [B/ImageGroups, N, Dv]; nil for the unimodal mode.
	Image *torch.Tensor
	// ImageGroups is how many consecutive rows of IDs share one image (beams, samples,
	// captions of one image): their queries are attended together, so the image's keys
	// and values are never copied. 0 means 1.
	ImageGroups int
	Causal      bool
	Train       bool
	// Cache holds keys and values of earlier steps (decoding); nil recomputes everything.
	Cache *KVCache
}

// Forward returns the last hidden states [B, T, D]. The pass has a scope of its own and
// frees each layer's input once the layer is done: only the output (and the cache's keys
// and values) outlive it. (Autograd keeps what backward needs by itself.)
func (m *TextModel) Forward(in TextInput) *torch.Tensor {
	pass := torch.ScopeOf(in.IDs, in.Mask, in.Image).Child()
	defer pass.Close()
	in.IDs = pass.Ref(in.IDs)
	if in.Mask != nil {
		in.Mask = pass.Ref(in.Mask)
	}
	if in.Image != nil {
		in.Image = pass.Ref(in.Image)
	}
	return pass.Keep(m.forward(in))
}

func (m *TextModel) forward(in TextInput) *torch.Tensor {
	ids := in.IDs
	s := ids.Shape()
	if len(s) != 2 {
		return torch.Failed(fmt.Errorf("text: input_ids shape %v, want [B, T]", s))
	}
	b, t := s[0], s[1]
	past := int64(0)
	if in.Cache != nil {
		past = int64(in.Cache.Len)
	}
	if past+t > int64(m.cfg.MaxPositions) {
		return torch.Failed(fmt.Errorf("text: %d positions exceed the model's %d", past+t, m.cfg.MaxPositions))
	}
	sc := ids.Scope()
	pos := sc.Ref(m.Embeddings.PositionEmbeddings).Narrow(0, past, t)
	// The [PAD] row gets no gradient from the lookup, as BERT's padding_idx.
	words := torch.EmbeddingPadded(m.Embeddings.WordEmbeddings, ids, m.cfg.PadID)
	if err := words.Err(); err != nil {
		return torch.Failed(m.idsError(ids, err))
	}
	x := m.Embeddings.LayerNorm.Forward(words.Add(pos))
	x = x.Dropout(m.cfg.Dropout, in.Train)
	mask, err := selfAttentionMask(ids, in.Mask, past, in.Causal, m.Embeddings.WordEmbeddings.DType())
	if err != nil {
		return torch.Failed(err)
	}
	groups := in.ImageGroups
	if groups <= 0 {
		groups = 1
	}
	if in.Image != nil {
		if is := in.Image.Shape(); len(is) != 3 || is[0]*int64(groups) != b {
			return torch.Failed(fmt.Errorf("text: image memory shape %v for %d rows in groups of %d", is, b, groups))
		}
	}
	for i, l := range m.Encoder.Layer {
		var lc *layerCache
		if in.Cache != nil {
			lc = &in.Cache.layers[i]
		}
		next := l.Forward(x, mask, in.Image, groups, in.Train, m.cfg.Dropout, lc, past)
		x.Free()
		x = next
	}
	if in.Cache != nil && x.Err() == nil {
		in.Cache.Len += int(t)
	}
	return x
}

// idsError explains a failed embedding lookup: libtorch's "index out of range" does not
// say which id or how many there are, and the usual cause is a tokenizer whose
// vocabulary is larger than the model's embedding.
func (m *TextModel) idsError(ids *torch.Tensor, lookup error) error {
	v := int64(m.cfg.VocabSize)
	sc := torch.NewScope()
	defer sc.Close()
	r := sc.Ref(ids)
	hi, errHi := r.Amax(false).Item()
	lo, errLo := r.Amin(false).Item()
	switch {
	case errHi == nil && int64(hi) >= v:
		return fmt.Errorf("text: token id %d is outside the vocabulary of %d ids (the model's word embeddings)", int64(hi), v)
	case errLo == nil && lo < 0:
		return fmt.Errorf("text: token id %d is negative (vocabulary of %d ids)", int64(lo), v)
	}
	return fmt.Errorf("text: word embeddings: %w", lookup)
}

func (l *TextLayer) Forward(x, mask, image *torch.Tensor, groups int, train bool, p float64, lc *layerCache, past int64) *torch.Tensor {
	var selfKV *kvPair
	if lc != nil {
		selfKV = &lc.self
	}
	// The layer's intermediates live in a scope of their own; the image is brought in so
	// that its keys and values (when not cached) are freed with them.
	s := x.Scope().Child()
	defer s.Close()
	x = s.Ref(x)
	if image != nil {
		image = s.Ref(image)
	}
	a := l.Attention.selfAttention(x, mask, train, p, selfKV, past)
	x = l.Attention.Output.LayerNorm.Forward(x.Add(l.Attention.Output.Dense.Forward(a).Dropout(p, train)))
	if image != nil {
		if l.Crossattention == nil {
			return torch.Failed(fmt.Errorf("text: cross attention asked of a model without it"))
		}
		var crossKV *kvPair
		if lc != nil {
			crossKV = &lc.cross
		}
		c := l.Crossattention.crossAttention(x, image, groups, train, p, crossKV)
		x = l.Crossattention.Output.LayerNorm.Forward(x.Add(l.Crossattention.Output.Dense.Forward(c).Dropout(p, train)))
	}
	h := l.Output.Dense.Forward(l.Intermediate.Dense.Forward(x).Gelu()).Dropout(p, train)
	return s.Keep(l.Output.LayerNorm.Forward(x.Add(h)))
}

// selfAttention attends x to itself (and to cached earlier positions); result [B, T, D].
func (a *AttentionBlock) selfAttention(x, mask *torch.Tensor, train bool, p float64, kv *kvPair, past int64) *torch.Tensor {
	q := splitHeads(a.Self.Query.Forward(x), a.heads)
	k := splitHeads(a.Self.Key.Forward(x), a.heads)
	v := splitHeads(a.Self.Value.Forward(x), a.heads)
	if kv != nil {
		var err error
		if k, v, err = kv.append(k, v, past); err != nil {
			return torch.Failed(err)
		}
	}
	dropout := 0.0
	if train {
		dropout = p
	}
	return mergeHeads(torch.Attention(q, k, v, mask, false, dropout, torch.AttentionBest))
}

// crossAttention attends x [B, T, D] to the image memory [B/groups, N, Dv]. The rows of
// one image are folded into the query length, so one image's keys and values serve all
// of them without being copied.
func (a *AttentionBlock) crossAttention(x, image *torch.Tensor, groups int, train bool, p float64, kv *kvPair) *torch.Tensor {
	var k, v *torch.Tensor
	if kv != nil && kv.k != nil {
		k, v = kv.k, kv.v
	} else {
		k = splitHeads(a.Self.Key.Forward(image), a.heads)
		v = splitHeads(a.Self.Value.Forward(image), a.heads)
		if kv != nil {
			// Stored contiguous once per image: as split-head views every decoding step
			// would copy them again inside the matmuls.
			kv.k, kv.v = kv.keep(k.Contiguous()), kv.keep(v.Contiguous())
		}
	}
	s := x.Shape()
	if len(s) != 3 {
		if err := x.Err(); err != nil {
			return torch.Failed(err)
		}
		return torch.Failed(fmt.Errorf("cross attention: want [B,T,D] queries, got shape %v", s))
	}
	b, t, d := s[0], s[1], s[2]
	g, h := int64(groups), int64(a.heads)
	q := a.Self.Query.Forward(x) // [B, T, D]
	if g > 1 {
		// [B/g, g, T, H, d] → [B/g, H, g·T, d]
		q = q.View(b/g, g, t, h, d/h).Permute(0, 3, 1, 2, 4).Reshape(b/g, h, g*t, d/h)
	} else {
		q = splitHeads(q, a.heads)
	}
	dropout := 0.0
	if train {
		dropout = p
	}
	out := torch.Attention(q, k, v, nil, false, dropout, torch.AttentionBest)
	if g > 1 {
		// [B/g, H, g·T, d] → [B, T, D]
		return out.View(b/g, h, g, t, d/h).Permute(0, 2, 3, 1, 4).Reshape(b, t, d)
	}
	return mergeHeads(out)
}

// selfAttentionMask builds BLIP's additive mask, broadcastable to [B, 1, T, past+T]: 0 where
// a query may attend a key, −10000 elsewhere (padding, and future keys when causal), as
// (1 − pad·causal)·(−10000). It is formed on the ids' device; only the causal pattern, which
// depends on the lengths alone, is made on the host. nil means every key is attended.
func selfAttentionMask(ids, keyMask *torch.Tensor, past int64, causal bool, dt torch.DType) (*torch.Tensor, error) {
	s := ids.Shape()
	b, t := s[0], s[1]
	total := past + t
	causal = causal && t > 1 // a single new query may attend every key so far
	if keyMask == nil && !causal {
		return nil, nil
	}
	sc, dev := ids.Scope(), ids.Device()
	var attend *torch.Tensor // 1 where attending is allowed
	if keyMask != nil {
		if err := keyMask.MustShape("text: attention mask", b, total); err != nil {
			return nil, err
		}
		attend = sc.Ref(keyMask).NeScalar(0).To(dev, dt).View(b, 1, 1, total)
	}
	if causal {
		pattern := make([]float32, t*total)
		for r := int64(0); r < t; r++ {
			for j := int64(0); j <= past+r; j++ {
				pattern[r*total+j] = 1
			}
		}
		c := sc.Track(torch.FromFloat32(pattern, 1, 1, t, total)).To(dev, dt)
		if attend == nil {
			attend = c
		} else {
			attend = attend.Mul(c)
		}
	}
	mask := attend.RSubScalar(1).MulScalar(-10000)
	return mask, mask.Err()
}
