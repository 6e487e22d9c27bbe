#!/usr/bin/env python3
"""PyTorch-on-CPU words/s of the bundled G2P model on the same words as `heedful bench --filter
seq2seq` (weights/fixtures/g2p_rnn_dot.json: the first 16 words at batch 1, the first 64 at batch
64), greedy and beam 4, with the reference modules (weights/seq2seq.py). With --heedful BENCH.json
(the output of `heedful bench --filter seq2seq --json`) it prints the ratio heedful / PyTorch.

    python weights/bench_g2p_torch.py [--threads 1] [--heedful bench.json]

The reference beam search decodes one word at a time, so "beam4 batch 64" is 64 single-word
searches.
"""

import argparse
import json
import os
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import seq2seq  # noqa: E402
from make_g2p_fixtures import load  # noqa: E402


def timed(fn, min_s=0.4, max_reps=10):
    fn()
    samples = []
    while len(samples) < 3 or (sum(samples) < min_s and len(samples) < max_reps):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    samples.sort()
    return samples[len(samples) // 2]


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--heedful", help="JSON output of heedful bench --filter seq2seq --json")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model = load(os.path.join(HERE, "g2p_rnn_dot.safetensors"))
    with open(os.path.join(HERE, "fixtures", "g2p_rnn_dot.json")) as f:
        ids = json.load(f)["ids"]
    hf = {}
    if a.heedful:
        with open(a.heedful) as f:
            doc = json.load(f)
        for line in doc.get("lines", doc.get("results", [])):
            if line.get("suite") == "seq2seq":
                hf[(line["op"], line["shape"])] = float(line["extra"]["words_per_s"])
    print(f"PyTorch {torch.__version__} CPU, {a.threads} thread(s)")
    for batch, n in ((1, 16), (64, 64)):
        words = ids[:n]
        for mode in ("greedy", "beam4"):
            if mode == "greedy":
                def run():
                    for i in range(0, len(words), batch):
                        seq2seq.greedy(model, words[i:i + batch])
            else:
                def run():
                    for w in words:
                        seq2seq.beam_search(model, w, k=4)
            s = timed(run)
            wps = len(words) / s
            shape = f"B{batch} words{len(words)}"
            line = f"{mode:<7} {shape:<14} torch {wps:8.1f} words/s"
            for (op, sh), h in sorted(hf.items()):
                if sh == shape and op.startswith(f"g2p:{mode}:"):
                    line += f"\n    heedful {op[len('g2p:'):]:<34} {h:8.1f} words/s ({h / wps:.2f}x)"
            print(line, flush=True)


if __name__ == "__main__":
    main()
