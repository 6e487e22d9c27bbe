#!/usr/bin/env python3
"""An opus-mt-en-zh-sized MarianMTModel with deterministic "random" weights, written the same way
by Python (here) and Rust (src/bench/marian_random.rs), and its Hugging Face fixture.

    python weights/marian_opus_random.py --folder /tmp/opus_random          # the model folder
    python weights/marian_opus_random.py --out weights/fixtures/marian_opus_random.json

Config (opus-mt-en-zh's shape): d_model 512, 6 encoder and 6 decoder layers, 8 heads, ffn 2048,
vocab 65001, swish, scale_embedding, static sinusoidal positions (not stored), shared and tied
embeddings, final_logits_bias, pad = decoder_start = 65000, eos 0, max_position_embeddings 512.
The tensors are exactly the ones save_pretrained writes for MarianMTModel (model.shared.weight,
final_logits_bias, model.{encoder,decoder}.layers.N.*), all F16.

The weight formula (no library needed; every value is exactly representable in f16, so there is
no rounding step to agree on, and f64 sums of the values are exact whatever the order):

    seed(name)  = FNV-1a 64 of the tensor name's UTF-8 bytes
                  (h = 0xcbf29ce484222325; for each byte b: h ^= b; h *= 0x100000001b3 mod 2^64)
    r_i         = splitmix64 output i (i = 0, 1, ... over the row-major elements):
                  z = seed + (i + 1) * 0x9e3779b97f4a7c15 mod 2^64;
                  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9; z = (z ^ (z >> 27)) * 0x94d049bb133111eb;
                  r_i = z ^ (z >> 31)                         (all mod 2^64)
    k_i         = (r_i mod (2L + 1)) - L                      (an integer in [-L, L])
    value_i     = center + scale * k_i / L

    kind (by tensor name)             center  scale   L
    model.shared.weight               0       2^-4    1024
    final_logits_bias                 0       2^-2    1024
    *layer_norm.weight                1       2^-3    128
    *layer_norm.bias                  0       2^-4    1024
    *fc2.weight                       0       2^-6    1024
    any other *.weight (q/k/v/out, fc1)  0    2^-5    1024
    any other *.bias                  0       2^-6    1024

    Exception: the last row of model.shared.weight (the pad id 65000, also the decoder start) is
    zero, as in converted opus-mt checkpoints (CTranslate2 relies on it: it starts decoding from
    a zero embedding).

Fixture JSON (weights/fixtures/marian_opus_random.json):
    versions: {transformers, torch}; formula: the table above as text;
    config: the config.json dict; generation_config: the generation_config.json dict;
    tensors: [{name, shape, sum, sum_sq, first: [8 values]}] in safetensors key order, sums in f64
        over the f16 values (exact, see above);
    inputs: [{input_ids: [source ids, eos 0 last],
              greedy_ids: generate(num_beams=1, max_new_tokens=5) row (decoder start first),
              steps: [{position: p, prefix: decoder ids fed (start + greedy ids before p),
                       top_ids: 16 ids of the largest raw logits (model output, before any
                       logits processor) at decoder position p, descending,
                       top_values: their logits (f32), row_sum, row_sum_sq: f64 sums over the
                       whole row of 65001 logits}] for positions 0, 1, 2}]
    The HF model is float32 holding the f16 values (what a f16 checkpoint loaded as float32 is).
"""

import argparse
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
M64 = (1 << 64) - 1
GAMMA = 0x9E3779B97F4A7C15


def fnv1a64(name):
    h = 0xCBF29CE484222325
    for b in name.encode("utf8"):
        h ^= b
        h = (h * 0x100000001B3) & M64
    return h


def kind(name):
    """(center, scale, L) of a tensor, by name."""
    if name == "model.shared.weight":
        return 0.0, 2.0**-4, 1024
    if name == "final_logits_bias":
        return 0.0, 2.0**-2, 1024
    if name.endswith("layer_norm.weight"):
        return 1.0, 2.0**-3, 128
    if name.endswith("layer_norm.bias"):
        return 0.0, 2.0**-4, 1024
    if name.endswith("fc2.weight"):
        return 0.0, 2.0**-6, 1024
    if name.endswith(".weight"):
        return 0.0, 2.0**-5, 1024
    if name.endswith(".bias"):
        return 0.0, 2.0**-6, 1024
    raise ValueError(f"no weight kind for tensor {name}")


def values(name, shape):
    """The tensor's values as a float16 numpy array of `shape` (exact, see the module doc)."""
    n = int(np.prod(shape))
    center, scale, L = kind(name)
    seed = np.uint64(fnv1a64(name))
    out = np.empty(n, dtype=np.float16)
    chunk = 1 << 22
    with np.errstate(over="ignore"):
        for lo in range(0, n, chunk):
            i = np.arange(lo + 1, min(n, lo + chunk) + 1, dtype=np.uint64)
            z = seed + i * np.uint64(GAMMA)
            z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            z = z ^ (z >> np.uint64(31))
            k = (z % np.uint64(2 * L + 1)).astype(np.int64) - L
            v = center + scale * k.astype(np.float64) / L
            h = v.astype(np.float16)
            assert np.array_equal(h.astype(np.float64), v), f"{name}: a value is not exact in f16"
            out[lo : lo + len(h)] = h
    if name == "model.shared.weight":
        out[(shape[0] - 1) * shape[1] :] = 0  # the pad row
    return out.reshape(shape)


def config():
    from transformers import MarianConfig

    return MarianConfig(
        vocab_size=65001,
        decoder_vocab_size=65001,
        d_model=512,
        encoder_layers=6,
        decoder_layers=6,
        encoder_attention_heads=8,
        decoder_attention_heads=8,
        encoder_ffn_dim=2048,
        decoder_ffn_dim=2048,
        activation_function="swish",
        scale_embedding=True,
        max_position_embeddings=512,
        share_encoder_decoder_embeddings=True,
        tie_word_embeddings=True,
        static_position_embeddings=True,
        pad_token_id=65000,
        decoder_start_token_id=65000,
        eos_token_id=0,
        forced_eos_token_id=0,
        bos_token_id=None,
        dropout=0.1,
        attention_dropout=0.0,
        activation_dropout=0.0,
    )


def generation_config():
    from transformers import GenerationConfig

    return GenerationConfig(
        num_beams=4,
        max_length=512,
        bad_words_ids=[[65000]],
        forced_eos_token_id=0,
        decoder_start_token_id=65000,
        pad_token_id=65000,
        eos_token_id=0,
        renormalize_logits=False,
    )


def build_model():
    """MarianMTModel (float32) holding the formula's values; returns (model, {name: f16 array})."""
    import torch
    from transformers import MarianMTModel

    torch.set_num_threads(1)
    model = MarianMTModel(config()).eval()
    model.generation_config = generation_config()
    arrays = {}
    state = model.state_dict()
    names = stored_names(model)
    with torch.no_grad():
        for name in names:
            a = values(name, tuple(state[name].shape))
            arrays[name] = a
            state[name].copy_(torch.from_numpy(a.astype(np.float32)))
    model.tie_weights()
    return model, arrays


def stored_names(model):
    """The tensor names save_pretrained writes (tied and static tensors left out)."""
    import tempfile

    from safetensors import safe_open

    # Cheap to derive without writing 150 MB: the state dict less the tied copies and the
    # static sinusoidal tables, checked once against a tiny save_pretrained below.
    skip = ("model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight", "lm_head.weight")
    names = [k for k in model.state_dict() if k not in skip and "embed_positions" not in k]
    small = type(model)(type(model.config)(**{**model.config.to_dict(), "d_model": 16, "vocab_size": 11,
                                               "decoder_vocab_size": 11, "encoder_ffn_dim": 8, "decoder_ffn_dim": 8,
                                               "encoder_attention_heads": 2, "decoder_attention_heads": 2,
                                               "pad_token_id": 10, "decoder_start_token_id": 10,
                                               "max_position_embeddings": 8}))
    with tempfile.TemporaryDirectory() as d:
        small.save_pretrained(d)
        with safe_open(os.path.join(d, "model.safetensors"), "pt") as f:
            saved = set(f.keys())
    assert saved == set(names), sorted(saved ^ set(names))
    return sorted(names)


def write_folder(folder):
    """Writes config.json, generation_config.json and F16 model.safetensors."""
    model, _ = build_model()
    model.half().save_pretrained(folder)
    return folder


def top16(row):
    import torch

    v, i = torch.topk(row, 16)
    r = row.double()
    return {"top_ids": i.tolist(), "top_values": v.tolist(), "row_sum": r.sum().item(), "row_sum_sq": (r * r).sum().item()}


def fixture(out):
    import torch
    import transformers

    model, arrays = build_model()
    tensors = []
    for name in sorted(arrays):
        a = arrays[name].astype(np.float64)
        tensors.append({"name": name, "shape": list(a.shape), "sum": float(a.sum()), "sum_sq": float((a * a).sum()),
                        "first": [float(x) for x in a.reshape(-1)[:8]]})
    sources = [[5, 17, 912, 64000, 33, 0], [41, 7, 7, 1024, 30000, 12, 8, 999, 2, 64999, 0]]
    inputs = []
    with torch.no_grad():
        for src in sources:
            x = torch.tensor([src])
            g = model.generate(x, num_beams=1, do_sample=False, max_new_tokens=5)[0].tolist()
            prefix = g[:3]
            logits = model(input_ids=x, decoder_input_ids=torch.tensor([prefix])).logits[0]
            steps = [{"position": p, "prefix": prefix[: p + 1], **top16(logits[p])} for p in range(3)]
            inputs.append({"input_ids": src, "greedy_ids": g, "steps": steps})
            print(f"source {src}: greedy {g}; top logits {steps[0]['top_values'][:3]}")
    doc = {
        "versions": {"transformers": transformers.__version__, "torch": torch.__version__},
        "formula": __doc__.split("The weight formula")[1].split("Fixture JSON")[0].strip(),
        "config": json.loads(model.config.to_json_string()),
        "generation_config": json.loads(model.generation_config.to_json_string()),
        "tensors": tensors,
        "inputs": inputs,
    }
    with open(out, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"wrote {out} ({os.path.getsize(out)} bytes, {len(tensors)} tensors)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", help="fixture JSON to write (e.g. weights/fixtures/marian_opus_random.json)")
    ap.add_argument("--folder", help="model folder to write (config, generation_config, F16 model.safetensors)")
    args = ap.parse_args()
    if not args.out and not args.folder:
        ap.error("give --out and/or --folder")
    if args.folder:
        write_folder(args.folder)
        print(f"wrote {args.folder}")
    if args.out:
        fixture(args.out)


if __name__ == "__main__":
    sys.exit(main())
