package blip

import (
	"fmt"

	"github.com/capfilt/capfilt/torch"
)

// ForwardInputs are the inputs of `capfilt model forward`, named as in its input file.
type ForwardInputs struct {
	PixelValues      *torch.Tensor // inputs.pixel_values [B,3,S,S], normalised
	PixelValuesHires *torch.Tensor // inputs.pixel_values_hires (optional): another size, interpolated positions
	InputIDs         *torch.Tensor // inputs.input_ids [B,T] int64, [CLS] first
	AttentionMask    *torch.Tensor // inputs.attention_mask [B,T]
}

// ReferenceOutputs computes every output the model's parts allow, under the names other
// implementations are compared on:
//
//	vision.last_hidden_state, vision.last_hidden_state_hires, text_unimodal.last_hidden_state,
//	itc.image_feat, itc.text_feat, itc.cosine, itm.logits, itm.prob, decoder.logits
//
// itm.* feed the text with [ENC] first, decoder.* with [DEC] first. The tensors belong to s.
func (m *Model) ReferenceOutputs(s *torch.Scope, in ForwardInputs) (map[string]*torch.Tensor, error) {
	out := map[string]*torch.Tensor{}
	var err error
	torch.NoGrad(func() {
		var image *torch.Tensor
		if m.VisionModel != nil && in.PixelValues != nil {
			image = m.EncodeImage(s.Ref(in.PixelValues), false)
			out["vision.last_hidden_state"] = image
			if in.PixelValuesHires != nil {
				out["vision.last_hidden_state_hires"] = m.EncodeImage(s.Ref(in.PixelValuesHires), false)
			}
		}
		if in.InputIDs == nil {
			return
		}
		ids := s.Ref(in.InputIDs).ToDevice(m.device)
		var mask *torch.Tensor
		if in.AttentionMask != nil {
			mask = s.Ref(in.AttentionMask).ToDevice(m.device)
		}
		if m.TextEncoder != nil {
			text := m.TextUnimodal(ids, mask, false)
			out["text_unimodal.last_hidden_state"] = text
			if m.VisionProj != nil && image != nil {
				imgFeat, txtFeat := m.ImageFeatures(image), m.TextFeatures(text)
				out["itc.image_feat"], out["itc.text_feat"] = imgFeat, txtFeat
				out["itc.cosine"] = imgFeat.Mul(txtFeat).Sum(false, -1)
			}
			if m.ITMHead != nil && image != nil {
				logits := m.ITMLogits(ids, mask, image, 1, false)
				out["itm.logits"] = logits
				out["itm.prob"] = logits.Softmax(-1).Select(1, 1)
			}
		}
		if m.TextDecoder != nil && image != nil {
			out["decoder.logits"] = m.DecoderLogits(ids, mask, image, 1, false)
		}
	})
	for name, t := range out {
		if e := t.Err(); e != nil {
			err = fmt.Errorf("%s: %w", name, e)
			break
		}
		out[name] = t.To(torch.CPU, torch.Float32)
	}
	return out, err
}
