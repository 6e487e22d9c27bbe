#!/usr/bin/env python3
"""Reference PyTorch modules of heedful's seq2seq-with-attention family.

A model is built from one config dict, which is exactly what `export.py` stores as
`heedful.config` (arch "seq2seq"); heedful's Rust side reads the same dict, so any model of this
family exported with `export_model` runs in heedful without Rust code.

Config keys (all sizes are ints):

    arch          "seq2seq"
    src_vocab     input vocabulary size;  src_tokens: list of its strings (optional, for display)
    tgt_vocab     output vocabulary size; tgt_tokens: list of its strings (optional)
    pad_id        padding id of the input (embedding row is zero, never read for valid positions)
    src_unk_id    id of unknown input symbols (optional)
    src_eos_id    id appended to every input sequence (null: nothing appended)
    bos_id        first decoder input; eos_id: the end token
    max_len       default maximum number of decoded tokens
    encoder: {cell: "lstm"|"gru"|"rnn"|"rnn_relu", emb, hidden, layers, bidirectional}
    decoder: {
      cell, emb, hidden, layers,
      attention: "none"|"dot"|"general"|"additive"|"multihead"|"tutorial",
      attn_dim      additive: the score MLP's width; multihead: q/k/v width (default hidden)
      heads         multihead: number of heads
      input_feeding previous context concatenated to the embedded input (bool)
      attn_layer    Luong attentional layer: out = tanh(W_c [context; h]) (bool)
      max_length    tutorial: number of encoder positions the attention Linear scores
      attention_order "luong" (default) or "bahdanau": see the two step orders below
    }
    bridge        "final": decoder layer l starts from encoder layer l's final state (the
                  directions concatenated; needs decoder hidden = D * encoder hidden and equal
                  layer counts); "zeros": decoder starts from zeros

One decoder step, Luong order (decoder.attention_order "luong", the default; every attention but
"tutorial"): the cell runs first, attention is scored with its NEW top hidden state h:

    x   = emb(y_prev)            (+ [x; ctx_prev] with input_feeding)
    h   = rnn_stack(x, state)    (top layer output h)
    ctx, w = attention(h, memory, mask)
    o   = tanh(W_c [ctx; h])     if attn_layer else ([ctx; h] if attention else h)
    logits = out(o)

One decoder step, Bahdanau order (decoder.attention_order "bahdanau", Bahdanau et al. 2015):
attention is scored with the PREVIOUS top-layer hidden state h_prev (the decoder's initial state
at the first step) and its context is both the cell's input and a direct input of the output
projection:

    e   = emb(y_prev)
    ctx, w = attention(h_prev, memory, mask)     (dot, general, additive or multihead)
    h   = rnn_stack([e; ctx], state)             (layer 0 input width emb + ctx)
    logits = out([h; ctx; e])                    (out: Linear(hidden + ctx + emb -> tgt_vocab))

The weights w kept for display are that step's. The context is recomputed each step, so
input_feeding and attn_layer have no meaning there and are rejected when true, as are the
attentions "none" and "tutorial".

"tutorial" (the PyTorch seq2seq tutorial's AttnDecoderRNN): scores come from a Linear over
[emb; h_prev] onto max_length positions (softmax over all of them; encoder outputs are zero past
the word), ctx = w @ memory_padded, x = relu(combine([emb; ctx])), h = rnn_stack(x), logits =
out(h).

State dict names are those of these modules (`encoder.rnn.weight_ih_l0`, `decoder.attn.w_q.weight`,
...). Decoding: `greedy` and `beam_search` below are the references heedful is tested against.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

CELLS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN, "rnn_relu": nn.RNN}
ATTENTIONS = ("none", "dot", "general", "additive", "multihead", "tutorial")
ORDERS = ("luong", "bahdanau")


def _rnn(cell, inp, hidden, layers, bidirectional=False):
    kw = {"nonlinearity": "relu"} if cell == "rnn_relu" else {}
    return CELLS[cell](inp, hidden, num_layers=layers, bidirectional=bidirectional,
                       batch_first=True, **kw)


class Encoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        e = cfg["encoder"]
        self.cell = e["cell"]
        self.emb = nn.Embedding(cfg["src_vocab"], e["emb"], padding_idx=cfg["pad_id"])
        self.rnn = _rnn(e["cell"], e["emb"], e["hidden"], e["layers"], e["bidirectional"])
        self.layers, self.dirs, self.hidden = e["layers"], 2 if e["bidirectional"] else 1, e["hidden"]

    def forward(self, src, lengths):
        """src [B, T] ids, lengths [B] -> memory [B, T, D*H] (zero past lengths), final state:
        (h [L, B, D*H], c or None), directions concatenated per layer."""
        x = self.emb(src)
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True,
                                                   enforce_sorted=False)
        out, st = self.rnn(packed)
        mem, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=src.shape[1])
        h, c = st if self.cell == "lstm" else (st, None)

        def cat(s):
            b = s.shape[1]
            return s.view(self.layers, self.dirs, b, self.hidden).permute(0, 2, 1, 3).reshape(
                self.layers, b, self.dirs * self.hidden)
        return mem, (cat(h), cat(c) if c is not None else None)


class Attention(nn.Module):
    """Scores the decoder's query [B, Dq] against memory [B, T, M]; returns ctx, weights [B, T]."""

    def __init__(self, kind, dq, dm, attn_dim=None, heads=1):
        super().__init__()
        self.kind = kind
        if kind == "dot":
            assert dq == dm, "dot attention needs decoder hidden == memory size"
        elif kind == "general":
            self.w = nn.Linear(dm, dq, bias=False)  # score = q . (W m)
        elif kind == "additive":
            a = attn_dim or dq
            self.w_q = nn.Linear(dq, a, bias=False)
            self.w_k = nn.Linear(dm, a, bias=True)
            self.v = nn.Linear(a, 1, bias=False)
        elif kind == "multihead":
            a = attn_dim or dq
            assert a % heads == 0
            self.heads = heads
            self.w_q = nn.Linear(dq, a)
            self.w_k = nn.Linear(dm, a)
            self.w_v = nn.Linear(dm, a)
            self.w_o = nn.Linear(a, a)
        self.ctx_dim = (attn_dim or dq) if kind == "multihead" else dm

    def forward(self, q, mem, mask):
        neg = torch.finfo(q.dtype).min
        if self.kind in ("dot", "general"):
            keys = mem if self.kind == "dot" else self.w(mem)
            s = torch.einsum("bd,btd->bt", q, keys).masked_fill(~mask, neg)
            w = torch.softmax(s, -1)
            return torch.einsum("bt,btm->bm", w, mem), w
        if self.kind == "additive":
            s = self.v(torch.tanh(self.w_q(q)[:, None, :] + self.w_k(mem))).squeeze(-1)
            w = torch.softmax(s.masked_fill(~mask, neg), -1)
            return torch.einsum("bt,btm->bm", w, mem), w
        # multihead
        b, t, _ = mem.shape
        h = self.heads
        qh = self.w_q(q).view(b, h, 1, -1)
        kh = self.w_k(mem).view(b, t, h, -1).transpose(1, 2)
        vh = self.w_v(mem).view(b, t, h, -1).transpose(1, 2)
        s = (qh @ kh.transpose(-1, -2)) / math.sqrt(qh.shape[-1])  # [B, H, 1, T]
        s = s.masked_fill(~mask[:, None, None, :], neg)
        w = torch.softmax(s, -1)
        ctx = (w @ vh).reshape(b, -1)
        return self.w_o(ctx), w.mean(1).squeeze(1)


class Decoder(nn.Module):
    def __init__(self, cfg, mem_dim):
        super().__init__()
        d = cfg["decoder"]
        self.cfg = d
        self.cell, self.kind = d["cell"], d.get("attention", "none")
        assert self.kind in ATTENTIONS, self.kind
        hid = d["hidden"]
        self.order = d.get("attention_order", "luong")
        if self.order not in ORDERS:
            raise ValueError(f"decoder.attention_order {self.order!r}: expected one of {ORDERS}")
        self.emb = nn.Embedding(cfg["tgt_vocab"], d["emb"])
        if self.order == "bahdanau":
            if self.kind in ("none", "tutorial"):
                raise ValueError(f"decoder.attention_order \"bahdanau\" needs dot, general, "
                                 f"additive or multihead attention, not {self.kind!r}")
            for key in ("input_feeding", "attn_layer"):
                if d.get(key):
                    raise ValueError(f"decoder.{key} must be false with decoder.attention_order "
                                     f"\"bahdanau\" (the context is recomputed each step)")
            self.attention = Attention(self.kind, hid, mem_dim, d.get("attn_dim"), d.get("heads", 1))
            self.ctx_dim = self.attention.ctx_dim
            self.input_feeding = self.attn_layer = False
            self.rnn = _rnn(self.cell, d["emb"] + self.ctx_dim, hid, d["layers"])
            self.out = nn.Linear(hid + self.ctx_dim + d["emb"], cfg["tgt_vocab"])
            return
        if self.kind == "tutorial":
            self.max_length = d["max_length"]
            self.attn = nn.Linear(d["emb"] + hid, self.max_length)
            self.combine = nn.Linear(d["emb"] + mem_dim, d["emb"])
            self.rnn = _rnn(self.cell, d["emb"], hid, d["layers"])
            self.out = nn.Linear(hid, cfg["tgt_vocab"])
            self.ctx_dim = mem_dim
            return
        self.attention = None
        self.ctx_dim = 0
        if self.kind != "none":
            self.attention = Attention(self.kind, hid, mem_dim, d.get("attn_dim"), d.get("heads", 1))
            self.ctx_dim = self.attention.ctx_dim
        self.input_feeding = bool(d.get("input_feeding")) and self.kind != "none"
        self.rnn = _rnn(self.cell, d["emb"] + (self.ctx_dim if self.input_feeding else 0), hid,
                        d["layers"])
        out_in = hid
        self.attn_layer = bool(d.get("attn_layer")) and self.kind != "none"
        if self.attn_layer:
            self.w_c = nn.Linear(self.ctx_dim + hid, hid, bias=False)
        elif self.kind != "none":
            out_in = self.ctx_dim + hid
        self.out = nn.Linear(out_in, cfg["tgt_vocab"])

    def init_state(self, final, batch, bridge):
        layers, hid = self.cfg["layers"], self.cfg["hidden"]
        if bridge == "final":
            h, c = final
            assert h.shape == (layers, batch, hid), (h.shape, layers, hid)
        else:
            h = torch.zeros(layers, batch, hid)
            c = torch.zeros(layers, batch, hid) if self.cell == "lstm" else None
        if self.cell == "lstm":
            if c is None:
                c = torch.zeros_like(h)
            return (h.contiguous(), c.contiguous())
        return h.contiguous()

    def init_ctx(self, batch):
        return torch.zeros(batch, self.ctx_dim)

    def step(self, y, state, ctx_prev, mem, mask):
        """y [B] ids -> logits [B, V], new state, ctx [B, C], attention weights [B, T or max_length]."""
        x = self.emb(y)
        if self.order == "bahdanau":
            h_prev = (state[0] if self.cell == "lstm" else state)[-1]
            ctx, w = self.attention(h_prev, mem, mask)
            out, state = self.rnn(torch.cat([x, ctx], -1)[:, None, :], state)
            h = out[:, 0]
            return self.out(torch.cat([h, ctx, x], -1)), state, ctx, w
        if self.kind == "tutorial":
            h_prev = (state[0] if self.cell == "lstm" else state)[-1]
            w = torch.softmax(self.attn(torch.cat([x, h_prev], -1)), -1)
            b, t, m = mem.shape
            padded = mem.new_zeros(b, self.max_length, m)
            padded[:, :min(t, self.max_length)] = mem[:, :self.max_length]
            ctx = torch.einsum("bt,btm->bm", w, padded)
            x = F.relu(self.combine(torch.cat([x, ctx], -1)))
            out, state = self.rnn(x[:, None, :], state)
            return self.out(out[:, 0]), state, ctx, w
        if self.input_feeding:
            x = torch.cat([x, ctx_prev], -1)
        out, state = self.rnn(x[:, None, :], state)
        h = out[:, 0]
        if self.attention is None:
            return self.out(h), state, ctx_prev, None
        ctx, w = self.attention(h, mem, mask)
        o = torch.cat([ctx, h], -1)
        if self.attn_layer:
            o = torch.tanh(self.w_c(o))
        return self.out(o), state, ctx, w


class Seq2Seq(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg, self.encoder.dirs * self.encoder.hidden)

    def encode(self, src, lengths):
        mem, final = self.encoder(src, lengths)
        mask = torch.arange(src.shape[1])[None, :] < lengths[:, None]
        state = self.decoder.init_state(final, src.shape[0], self.cfg.get("bridge", "zeros"))
        return mem, mask, state

    def forward(self, src, lengths, tgt_in):
        """Teacher forcing: tgt_in [B, U] -> logits [B, U, V]."""
        mem, mask, state = self.encode(src, lengths)
        ctx = self.decoder.init_ctx(src.shape[0])
        logits = []
        for u in range(tgt_in.shape[1]):
            lg, state, ctx, _ = self.decoder.step(tgt_in[:, u], state, ctx, mem, mask)
            logits.append(lg)
        return torch.stack(logits, 1)


def src_ids(cfg, seq):
    """Input ids of one sequence (list of ids), with src_eos_id appended when the config says so."""
    ids = list(seq)
    if cfg.get("src_eos_id") is not None:
        ids.append(cfg["src_eos_id"])
    return ids


def batch_src(cfg, seqs):
    ids = [src_ids(cfg, s) for s in seqs]
    t = max(len(s) for s in ids)
    src = torch.full((len(ids), t), cfg["pad_id"], dtype=torch.long)
    for i, s in enumerate(ids):
        src[i, :len(s)] = torch.tensor(s)
    return src, torch.tensor([len(s) for s in ids])


@torch.no_grad()
def greedy(model, seqs, max_len=None):
    """Greedy decoding of a batch of id lists. Returns per sequence (tokens without the end token,
    log-probability of each emitted token including the end token if reached, attention weights
    [steps, T])."""
    cfg = model.cfg
    max_len = max_len or cfg["max_len"]
    src, lengths = batch_src(cfg, seqs)
    mem, mask, state = model.encode(src, lengths)
    b = src.shape[0]
    ctx = model.decoder.init_ctx(b)
    y = torch.full((b,), cfg["bos_id"], dtype=torch.long)
    done = torch.zeros(b, dtype=torch.bool)
    toks = [[] for _ in range(b)]
    lps = [[] for _ in range(b)]
    attn = [[] for _ in range(b)]
    for _ in range(max_len):
        logits, state, ctx, w = model.decoder.step(y, state, ctx, mem, mask)
        lp = torch.log_softmax(logits.float(), -1)
        y = lp.argmax(-1)
        for i in range(b):
            if done[i]:
                continue
            lps[i].append(float(lp[i, y[i]]))
            if w is not None:
                attn[i].append(w[i].tolist())
            if int(y[i]) == cfg["eos_id"]:
                done[i] = True
            else:
                toks[i].append(int(y[i]))
        if bool(done.all()):
            break
    return toks, lps, attn


def _select_state(state, idx):
    if isinstance(state, tuple):
        return tuple(s[:, idx] for s in state)
    return state[:, idx]


@torch.no_grad()
def beam_search(model, seq, k=4, max_len=None, length_norm=False, attention=False):
    """Beam search for one sequence. Each step, every live hypothesis is extended by its k best
    tokens; of the k*k candidates the k best (by summed log-probability) are kept; a candidate that
    ends with the end token is finished (it leaves the beam). Search stops when k hypotheses are
    finished or the best finished score beats every live one's score (without length_norm, scores
    only fall, so that is final), or at max_len (live hypotheses are then finished as they are).
    Returns the best hypothesis by score (sum of log-probs, divided by its length counting the end
    token when length_norm) as (tokens without the end token, score). Ties keep the earlier
    candidate (candidates are ordered by hypothesis rank, then by token rank).

    With attention=True, returns (tokens, score, weights): the best hypothesis's attention weights
    per step it was extended (each a list over the input positions as Decoder.step gives them:
    T, or max_length for "tutorial"), one per token plus one for the end token's step when it
    finished with the end token (as `greedy` returns them); [] for attention "none"."""
    cfg = model.cfg
    max_len = max_len or cfg["max_len"]
    eos = cfg["eos_id"]
    src, lengths = batch_src(cfg, [seq])
    mem, mask, state = model.encode(src, lengths)
    ctx = model.decoder.init_ctx(1)
    hyps = [([], 0.0)]
    # Per hypothesis (parallel to hyps / finished): attention rows of its steps.
    hyp_w = [[]]
    fin_w = []
    y = torch.tensor([cfg["bos_id"]])
    finished = []

    def norm(score, n):
        return score / n if length_norm else score

    for step in range(max_len):
        n = len(hyps)
        logits, state, ctx, w = model.decoder.step(
            y, state, ctx, mem.expand(n, -1, -1), mask.expand(n, -1))
        lp = torch.log_softmax(logits.float(), -1)
        top_v, top_i = lp.topk(k, -1)  # sorted, ties by lower index
        cands = []
        for h in range(n):
            for j in range(k):
                cands.append((hyps[h][1] + float(top_v[h, j]), h, int(top_i[h, j])))
        # stable sort by score, descending
        cands.sort(key=lambda c: -c[0])
        w_rows = w.tolist() if attention and w is not None else None
        new_hyps, new_w, src_idx, ys = [], [], [], []
        for score, h, tok in cands:
            rows = hyp_w[h] + [w_rows[h]] if w_rows is not None else hyp_w[h]
            if tok == eos:
                finished.append((hyps[h][0], norm(score, len(hyps[h][0]) + 1)))
                fin_w.append(rows)
            else:
                new_hyps.append((hyps[h][0] + [tok], score))
                new_w.append(rows)
                src_idx.append(h)
                ys.append(tok)
            if len(new_hyps) == k:
                break
        if len(finished) >= k or not new_hyps:
            break
        best_fin = max((f[1] for f in finished), default=-math.inf)
        if not length_norm and best_fin >= max(s for _, s in new_hyps):
            break
        hyps, hyp_w = new_hyps, new_w
        idx = torch.tensor(src_idx)
        state = _select_state(state, idx)
        ctx = ctx[idx]
        y = torch.tensor(ys)
    else:
        for (toks, s), rows in zip(hyps, hyp_w):
            finished.append((toks, norm(s, len(toks))))
            fin_w.append(rows)
    if not finished:
        finished = [(t, norm(s, max(len(t), 1))) for t, s in hyps]
        fin_w = hyp_w
    best = max(range(len(finished)), key=lambda i: (finished[i][1], -i))
    if attention:
        return finished[best][0], finished[best][1], fin_w[best]
    return finished[best][0], finished[best][1]


def export_model(model, path, dtype="fp16"):
    """Writes the model with its config as heedful.config (arch "seq2seq")."""
    return _export_fn()(model, path, config=model.cfg, dtype=dtype, arch="seq2seq")


def _export_fn():
    """weights/export.py's `export` (next to this file; until that script is merged into this
    branch, from the path in HEEDFUL_EXPORT_PY or the weights branch's worktree)."""
    import importlib.util
    import os
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "export.py")
    for path in (here, os.environ.get("HEEDFUL_EXPORT_PY", ""), "/work/wt-weights/weights/export.py"):
        if path and os.path.exists(path):
            spec = importlib.util.spec_from_file_location("heedful_export", path)
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
            return mod.export
    raise FileNotFoundError("weights/export.py not found")
