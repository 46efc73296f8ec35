"""BLIP's training objectives in plain torch, written from blip-spec.md §3, §5, §6, §7.

Functional, over HF-named state dicts (float32, CPU), with autograd on. "Eval math": no
dropout anywhere (the original computes in train mode, with BERT dropout 0.1; a check
with dropout off uses eval math on the online and the momentum passes alike).

- pretraining (§6): ITC with momentum encoders, feature queues and momentum distillation;
  ITM with hard negatives (given indices, so the check is deterministic; the sampling
  weights are returned to be checked); LM with label smoothing 0.1; loss = ITC+ITM+LM.
- retrieval finetune (§6): ITC with same-image positives (idx queue), ITM.
- caption finetune (§6): LM with the prompt positions masked out of the loss.
"""
import torch
import torch.nn.functional as F

import model

MOMENTUM = 0.995
LABEL_SMOOTHING = 0.1
TEMP_MIN, TEMP_MAX = 0.001, 0.5


# ---------------------------------------------------------------- parameters

def is_own_decoder_name(name):
    """Decoder names that are NOT shared with the encoder in pretraining: the
    self-attention sublayer (attention.self.* and attention.output.*) and the LM head."""
    if name.startswith("text_decoder.cls."):
        return True
    parts = name.split(".")
    return name.startswith("text_decoder.bert.encoder.layer.") and parts[5] == "attention"


def share_text(sd):
    """Ties text_decoder.bert.X to text_encoder.X for every X outside self-attention
    (the same tensor object, so gradients from both towers accumulate in one place)."""
    out = dict(sd)
    for k in sd:
        if k.startswith("text_decoder.bert.") and not is_own_decoder_name(k):
            out[k] = out["text_encoder." + k[len("text_decoder.bert."):]]
    return out


def unique_params(sd):
    """(owner name, tensor) for every distinct tensor, first name wins (text_encoder.* for
    shared ones), in the state dict's order."""
    seen, out = set(), []
    for k, v in sd.items():
        if id(v) in seen:
            continue
        seen.add(id(v))
        out.append((k, v))
    return out


MOMENTUM_PREFIXES = ("vision_model.", "text_encoder.", "vision_proj.", "text_proj.")


def momentum_copy(sd):
    """Copies start equal (spec §6): ViT, text encoder, both projections."""
    return {k: v.detach().clone() for k, v in sd.items() if k.startswith(MOMENTUM_PREFIXES)}


@torch.no_grad()
def momentum_update(msd, sd, m=MOMENTUM):
    """theta_m <- m * theta_m + (1 - m) * theta, before the momentum forward."""
    for k in msd:
        msd[k] = msd[k] * m + sd[k].detach() * (1.0 - m)


# ---------------------------------------------------------------- queues

def init_queue(embed_dim, size, generator):
    """N(0,1), then every column L2-normalised."""
    return F.normalize(torch.randn(embed_dim, size, generator=generator), dim=0)


@torch.no_grad()
def enqueue(queue, ptr, feats):
    """Writes feats [B, E] as columns ptr..ptr+B-1; returns the new pointer."""
    B, Q = feats.shape[0], queue.shape[1]
    assert Q % B == 0, "queue size must be divisible by the (global) batch"
    queue[:, ptr:ptr + B] = feats.t()
    return (ptr + B) % Q


# ---------------------------------------------------------------- pieces

def features(sd, cfg, pixel_values, input_ids, attention_mask):
    img = model.vision_forward(sd, cfg, pixel_values)
    txt = model.text_forward(sd, cfg, "text_encoder.", input_ids,
                             model.padding_mask(attention_mask))
    img_feat = model.normalize(model.linear(img[:, 0], sd, "vision_proj"))
    txt_feat = model.normalize(model.linear(txt[:, 0], sd, "text_proj"))
    return img, img_feat, txt_feat


def soft_ce(logits, targets):
    """mean over rows of -sum(target * log_softmax(logits))."""
    return -(F.log_softmax(logits, dim=1) * targets).sum(1).mean()


def smoothed_ce(logits, targets, eps=LABEL_SMOOTHING, ignore=-100):
    """(1-eps)*NLL + eps*mean over the vocabulary of -log p, averaged over the targets
    that are not `ignore` (written out; the selftest checks it against F.cross_entropy)."""
    logp = F.log_softmax(logits, dim=-1)
    keep = targets != ignore
    logp, t = logp[keep], targets[keep]
    nll = -logp.gather(1, t[:, None])[:, 0]
    uniform = -logp.mean(dim=1)
    return ((1 - eps) * nll + eps * uniform).mean()


def with_first(ids, token):
    out = ids.clone()
    out[:, 0] = token
    return out


def itm_loss(sd, cfg, input_ids, attention_mask, img, neg_img, neg_txt):
    """B positives, then B (text b, negative image of text b), then B (negative text of
    image b, image b); labels 1 x B, 0 x 2B; cross-entropy."""
    t = cfg["text_config"]
    enc = with_first(input_ids, t["enc_token_id"])
    pos = model.text_forward(sd, cfg, "text_encoder.", enc, model.padding_mask(attention_mask),
                             img)
    ids_all = torch.cat([enc, enc[neg_txt]], 0)
    mask_all = torch.cat([attention_mask, attention_mask[neg_txt]], 0)
    img_all = torch.cat([img[neg_img], img], 0)
    neg = model.text_forward(sd, cfg, "text_encoder.", ids_all, model.padding_mask(mask_all),
                             img_all)
    logits = model.linear(torch.cat([pos[:, 0], neg[:, 0]], 0), sd, "itm_head")
    B = input_ids.shape[0]
    labels = torch.cat([torch.ones(B, dtype=torch.long), torch.zeros(2 * B, dtype=torch.long)])
    return F.cross_entropy(logits, labels), logits


def lm_loss(sd, cfg, input_ids, attention_mask, img, prompt_len=0):
    """[DEC] first; targets = ids with pads -> -100 (and the first prompt_len positions);
    logits at t predict token t+1."""
    t = cfg["text_config"]
    dec = with_first(input_ids, t["bos_token_id"])
    targets = dec.masked_fill(dec == t["pad_token_id"], -100)
    if prompt_len:
        targets[:, :prompt_len] = -100
    h = model.text_forward(sd, cfg, "text_decoder.bert.", dec, model.causal_mask(attention_mask),
                           img)
    logits = model.lm_logits(sd, cfg, h)
    V = logits.shape[-1]
    return smoothed_ce(logits[:, :-1].reshape(-1, V), targets[:, 1:].reshape(-1))


@torch.no_grad()
def clamp_temp(sd):
    sd["temp"].clamp_(TEMP_MIN, TEMP_MAX)


# ---------------------------------------------------------------- objectives

def pretrain_losses(sd, msd, cfg, batch, queues, alpha, neg_img, neg_txt):
    """One pretraining step's losses. queues = dict(image, text, ptr), written after ITC.
    Returns (losses dict, extras dict)."""
    clamp_temp(sd)
    temp = sd["temp"]
    pv, ids, mask = batch["pixel_values"], batch["input_ids"], batch["attention_mask"]
    B = ids.shape[0]
    img, img_feat, txt_feat = features(sd, cfg, pv, ids, mask)
    with torch.no_grad():
        momentum_update(msd, sd)
        _, img_feat_m, txt_feat_m = features(msd, cfg, pv, ids, mask)
        img_all = torch.cat([img_feat_m.t(), queues["image"].clone()], 1)
        txt_all = torch.cat([txt_feat_m.t(), queues["text"].clone()], 1)
        sim_i2t_m = img_feat_m @ txt_all / temp
        sim_t2i_m = txt_feat_m @ img_all / temp
        onehot = torch.zeros_like(sim_i2t_m)
        onehot[:, :B] = torch.eye(B)
        tgt_i2t = alpha * F.softmax(sim_i2t_m, 1) + (1 - alpha) * onehot
        tgt_t2i = alpha * F.softmax(sim_t2i_m, 1) + (1 - alpha) * onehot
    sim_i2t = img_feat @ txt_all / temp
    sim_t2i = txt_feat @ img_all / temp
    itc = (soft_ce(sim_i2t, tgt_i2t) + soft_ce(sim_t2i, tgt_t2i)) / 2
    ptr = enqueue(queues["image"], queues["ptr"], img_feat_m)
    enqueue(queues["text"], queues["ptr"], txt_feat_m)
    queues["ptr"] = ptr
    with torch.no_grad():
        # the online similarities against the batch part (online vs momentum features)
        w_t2i = F.softmax(sim_t2i[:, :B], 1) + 1e-4
        w_t2i.fill_diagonal_(0)
        w_i2t = F.softmax(sim_i2t[:, :B], 1) + 1e-4
        w_i2t.fill_diagonal_(0)
    itm, itm_logits = itm_loss(sd, cfg, ids, mask, img, neg_img, neg_txt)
    lm = lm_loss(sd, cfg, ids, mask, img)
    losses = {"itc": itc, "itm": itm, "lm": lm, "total": itc + itm + lm}
    extras = {"itc.sim_i2t": sim_i2t, "itc.sim_t2i": sim_t2i, "itc.targets_i2t": tgt_i2t,
              "itc.targets_t2i": tgt_t2i, "itm.weights_t2i": w_t2i, "itm.weights_i2t": w_i2t,
              "itm.logits": itm_logits}
    return losses, extras


def retrieval_losses(sd, msd, cfg, batch, queues, alpha, neg_img, neg_txt):
    """Retrieval finetune: queues = dict(image, text, idx [1,Q], ptr)."""
    clamp_temp(sd)
    temp = sd["temp"]
    pv, ids, mask = batch["pixel_values"], batch["input_ids"], batch["attention_mask"]
    idx = batch["image_ids"].view(-1, 1)
    img, img_feat, txt_feat = features(sd, cfg, pv, ids, mask)
    idx_all = torch.cat([idx.t(), queues["idx"].clone()], 1)
    pos = (idx == idx_all).float()
    positives = pos / pos.sum(1, keepdim=True)
    with torch.no_grad():
        momentum_update(msd, sd)
        _, img_feat_m, txt_feat_m = features(msd, cfg, pv, ids, mask)
        img_all = torch.cat([img_feat_m.t(), queues["image"].clone()], 1)
        txt_all = torch.cat([txt_feat_m.t(), queues["text"].clone()], 1)
        tgt_i2t = alpha * F.softmax(img_feat_m @ txt_all / temp, 1) + (1 - alpha) * positives
        tgt_t2i = alpha * F.softmax(txt_feat_m @ img_all / temp, 1) + (1 - alpha) * positives
    sim_i2t = img_feat @ txt_all / temp
    sim_t2i = txt_feat @ img_all / temp
    itc = (soft_ce(sim_i2t, tgt_i2t) + soft_ce(sim_t2i, tgt_t2i)) / 2
    ptr = queues["ptr"]
    enqueue(queues["image"], ptr, img_feat_m)
    enqueue(queues["text"], ptr, txt_feat_m)
    queues["ptr"] = _enqueue_idx(queues, ptr, idx)
    with torch.no_grad():
        same = idx == idx.t()
        w_i2t = F.softmax(img_feat @ txt_feat.t() / temp, 1).masked_fill(same, 0)
        w_t2i = F.softmax(txt_feat @ img_feat.t() / temp, 1).masked_fill(same, 0)
    itm, itm_logits = itm_loss(sd, cfg, ids, mask, img, neg_img, neg_txt)
    losses = {"itc": itc, "itm": itm, "total": itc + itm}
    extras = {"itc.targets_i2t": tgt_i2t, "itc.positives": positives,
              "itm.weights_t2i": w_t2i, "itm.weights_i2t": w_i2t, "itm.logits": itm_logits}
    return losses, extras


@torch.no_grad()
def _enqueue_idx(queues, ptr, idx):
    B, Q = idx.shape[0], queues["idx"].shape[1]
    queues["idx"][:, ptr:ptr + B] = idx.t()
    return (ptr + B) % Q


def caption_loss(sd, cfg, batch, prompt_len):
    img = model.vision_forward(sd, cfg, batch["pixel_values"])
    lm = lm_loss(sd, cfg, batch["input_ids"], batch["attention_mask"], img, prompt_len)
    return {"lm": lm, "total": lm}
