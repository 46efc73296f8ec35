"""Generation with transformers-4.15 semantics (blip-spec.md §9), model-agnostic.

`next_logits(ids, rows)` returns the raw next-token logits [N, V] for the sequences `ids`
[N, L]; `rows` [N] says which batch item (image) each sequence belongs to.
Lengths (max_length, min_length) count the whole sequence including the prompt.
"""
import torch

NEG_INF = float("-inf")


# ------------------------------------------------------------ logits processors

def repetition_penalty(scores, ids, penalty):
    """Every id already in the row, once: s/p if s > 0 else s*p (s == 0 stays 0)."""
    if penalty == 1.0:
        return scores
    out = scores.clone()
    for r in range(ids.shape[0]):
        seen = torch.unique(ids[r])
        s = out[r, seen]
        out[r, seen] = torch.where(s > 0, s / penalty, s * penalty)
    return out


def min_length_rule(scores, cur_len, min_length, eos):
    """While the sequence (incl. prompt) is shorter than min_length, [SEP] is -inf."""
    if cur_len < min_length:
        scores = scores.clone()
        scores[:, eos] = NEG_INF
    return scores


def process(scores, ids, penalty, min_length, eos):
    return min_length_rule(repetition_penalty(scores, ids, penalty), ids.shape[1], min_length, eos)


def top_k_filter(scores, k):
    """Drop every score strictly below the k-th largest (ties with it survive)."""
    k = min(k, scores.shape[-1])
    kth = torch.topk(scores, k, dim=-1).values[..., -1:]
    return scores.masked_fill(scores < kth, NEG_INF)


def top_p_filter(scores, p):
    """Sort descending; keep a token while the probability mass before it is <= p; keep >= 1."""
    sorted_scores, order = torch.sort(scores, dim=-1, descending=True)
    cum = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
    remove = cum > p
    remove[..., 1:] = remove[..., :-1].clone()  # mass *before* each token
    remove[..., 0] = False
    mask = torch.zeros_like(remove).scatter(-1, order, remove)
    return scores.masked_fill(mask, NEG_INF)


def nucleus_distribution(last_logits, ids, penalty=1.1, min_length=10, eos=102, top_k=50,
                         top_p=0.9):
    """The distribution the sampler draws the next token from, plus boundary margins."""
    s = process(last_logits, ids, penalty, min_length, eos)
    sk = top_k_filter(s, top_k)
    sp = top_p_filter(sk, top_p)
    probs = sp.softmax(dim=-1)
    info = []
    for r in range(s.shape[0]):
        srt = torch.sort(s[r], descending=True).values
        c = torch.sort(sk[r], descending=True).values.softmax(-1).cumsum(-1)
        kept = int((probs[r] > 0).sum())
        info.append(dict(kept=kept, kth_gap=float(srt[top_k - 1] - srt[top_k]),
                         mass_before_last_kept=float(c[kept - 2]) if kept > 1 else 0.0,
                         mass_before_first_dropped=float(c[kept - 1])))
    return probs, info


# ------------------------------------------------------------ greedy

def greedy(next_logits, ids, max_length, min_length, penalty, eos, pad):
    """4.15 greedy_search. Finished rows receive `pad`; stops when all rows emitted eos or the
    length reaches max_length. Returns (ids [B, L], info)."""
    B = ids.shape[0]
    rows = torch.arange(B)
    unfinished = torch.ones(B, dtype=torch.long)
    info = dict(eos_step=[None] * B, min_length_blocked=[], min_margin=float("inf"))
    while ids.shape[1] < max_length:
        cur_len = ids.shape[1]
        raw = next_logits(ids, rows)
        pen = repetition_penalty(raw, ids, penalty)
        scores = min_length_rule(pen, cur_len, min_length, eos)
        nxt = scores.argmax(dim=-1)
        for r in range(B):
            if not unfinished[r]:
                continue
            if cur_len < min_length and int(pen[r].argmax()) == eos:
                info["min_length_blocked"].append((r, cur_len))
            top2 = torch.topk(scores[r], 2).values
            info["min_margin"] = min(info["min_margin"], float(top2[0] - top2[1]))
        nxt = nxt * unfinished + pad * (1 - unfinished)
        ids = torch.cat([ids, nxt[:, None]], dim=1)
        for r in range(B):
            if unfinished[r] and int(nxt[r]) == eos:
                info["eos_step"][r] = cur_len  # index of the [SEP] in the output
        unfinished = unfinished * (nxt != eos).long()
        if int(unfinished.max()) == 0:
            break
    return ids, info


# ------------------------------------------------------------ beam search

class Hypotheses:
    """Finished hypotheses of one batch item (4.15 BeamHypotheses, early_stopping=False)."""

    def __init__(self, num_beams, length_penalty):
        self.num_beams = num_beams
        self.length_penalty = length_penalty
        self.beams = []  # (score, ids) in insertion order
        self.worst_score = 1e9

    def add(self, hyp, sum_logprobs):
        # hyp excludes the closing [SEP]; its length includes the prompt
        score = sum_logprobs / (hyp.shape[-1] ** self.length_penalty)
        if len(self.beams) < self.num_beams or score > self.worst_score:
            self.beams.append((score, hyp))
            if len(self.beams) > self.num_beams:
                ranked = sorted([(s, i) for i, (s, _) in enumerate(self.beams)])
                del self.beams[ranked[0][1]]
                self.worst_score = ranked[1][0]
            else:
                self.worst_score = min(score, self.worst_score)

    def is_done(self, best_sum_logprobs, cur_len):
        if len(self.beams) < self.num_beams:
            return False
        return self.worst_score >= best_sum_logprobs / (cur_len ** self.length_penalty)


def beam_search(next_logits, ids, num_beams, max_length, min_length, penalty, eos, pad,
                length_penalty=1.0):
    """4.15 beam_search. Returns (ids [B, L], best scores, info)."""
    B, K = ids.shape[0], num_beams
    ids = ids.repeat_interleave(K, dim=0)
    rows = torch.arange(B).repeat_interleave(K)
    beam_scores = torch.zeros(B, K)
    beam_scores[:, 1:] = -1e9
    beam_scores = beam_scores.view(-1)
    hyps = [Hypotheses(K, length_penalty) for _ in range(B)]
    done = [False] * B
    info = dict(closed=[], min_length_blocked=[], min_gap=float("inf"), steps=0)
    while True:
        cur_len = ids.shape[1]
        logp = next_logits(ids, rows).log_softmax(dim=-1)
        pen = repetition_penalty(logp, ids, penalty)
        scores = min_length_rule(pen, cur_len, min_length, eos) + beam_scores[:, None]
        V = scores.shape[-1]
        flat = scores.view(B, K * V)
        top_scores, top_ids = torch.topk(flat, 2 * K, dim=1, largest=True, sorted=True)
        top_beam, top_tok = top_ids // V, top_ids % V
        nb_scores = torch.zeros(B, K)
        nb_tokens = torch.zeros(B, K, dtype=torch.long)
        nb_index = torch.zeros(B, K, dtype=torch.long)
        for b in range(B):
            if done[b]:
                nb_tokens[b] = pad  # scores 0, index 0: the frozen rows are never read again
                continue
            if cur_len < min_length:  # would [SEP] have ranked among the top K without the rule?
                alt = (pen + beam_scores[:, None]).view(B, K * V)[b]
                alt_tok = torch.topk(alt, K).indices % V
                if (alt_tok == eos).any():
                    info["min_length_blocked"].append((b, cur_len))
            gaps = torch.topk(flat[b], 2 * K + 1).values
            gaps = gaps[:-1] - gaps[1:]
            gaps = gaps[torch.isfinite(gaps)]
            if len(gaps):
                info["min_gap"] = min(info["min_gap"], float(gaps.min()))
            j = 0
            for rank in range(2 * K):
                tok, sc, beam = int(top_tok[b, rank]), top_scores[b, rank], int(top_beam[b, rank])
                src = b * K + beam
                if tok == eos:
                    if rank >= K:
                        continue  # [SEP] outside the top K ranks does not close a hypothesis
                    hyps[b].add(ids[src].clone(), sc.item())
                    info["closed"].append(dict(row=b, cur_len=cur_len, beam=beam,
                                               score=sc.item() / cur_len ** length_penalty))
                else:
                    nb_scores[b, j], nb_tokens[b, j], nb_index[b, j] = sc, tok, src
                    j += 1
                if j == K:
                    break
            if j < K:
                raise RuntimeError("too many [SEP] candidates")
            done[b] = done[b] or hyps[b].is_done(top_scores[b].max().item(), cur_len)
        ids = torch.cat([ids[nb_index.view(-1)], nb_tokens.view(-1, 1)], dim=1)
        beam_scores = nb_scores.view(-1)
        info["steps"] += 1
        if all(done) or ids.shape[1] >= max_length:
            break
    info["done_before_max_length"] = list(done)
    for b in range(B):  # open beams of unfinished items are closed as they stand
        if done[b]:
            continue
        for k in range(K):
            hyps[b].add(ids[b * K + k], beam_scores[b * K + k].item())
    best, best_scores = [], []
    for b in range(B):
        ranked = sorted(hyps[b].beams, key=lambda x: x[0])
        score, hyp = ranked.pop()
        best.append(hyp)
        best_scores.append(score)
    lengths = [len(h) for h in best]
    L = min(max(lengths) + 1, max_length)
    out = torch.full((B, L), pad, dtype=torch.long)
    for b, h in enumerate(best):
        out[b, :len(h)] = h
        if len(h) < max_length:
            out[b, len(h)] = eos
    return out, torch.tensor(best_scores, dtype=torch.float64), info
