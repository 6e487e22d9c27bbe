#!/usr/bin/env python3
"""Reference speeds for heedful's Marian benchmarks: generated tokens/s of Hugging Face
transformers (PyTorch, CPU) and CTranslate2 (CPU) at batch 1 and 32, greedy and beam 4, on the
bundled model (weights/marian) and on the opus-mt-en-zh-sized random model (written by the formula
of weights/marian_opus_random.py into a temp dir). Prints one JSON document.

    pip install torch transformers sentencepiece ctranslate2
    python weights/bench_marian_reference.py --threads 1 > /tmp/marian_ref.json
    python weights/bench_marian_reference.py --device cuda > /tmp/marian_ref_cuda.json   # on a GPU machine

Method: each case runs once to warm up, then --repeats times; the median wall time counts.
"Generated tokens" are the tokens of the returned best hypotheses, without the decoder start
token and padding (</s> included), summed over the batch: tokens/s = that / median time.
Inputs: the bundled model translates held-out headwords (data/heldout.tsv; outputs end where the
model emits </s>, typically 3-8 tokens); the random model gets source ids of 12 tokens and
exactly --random-new-tokens generated tokens (min_new_tokens = max_new_tokens; for CTranslate2
min_decoding_length = max_decoding_length), since random weights never end on their own.
CTranslate2 converts each folder with ctranslate2.converters.TransformersConverter (float32,
the same weights HF runs) into a temp dir; intra_threads = --threads, inter_threads 1. The
random folder gets a synthetic vocab.json and the bundled spm files for that converter only
(CTranslate2 reads the vocabulary through the tokenizer).
"""

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def timed(fn, repeats):
    fn()
    times = []
    out = None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def hf_case(model, src_ids, pad, beams, new_tokens, repeats, device):
    import torch

    S = max(map(len, src_ids))
    x = torch.full((len(src_ids), S), pad)
    m = torch.zeros((len(src_ids), S), dtype=torch.long)
    for r, s in enumerate(src_ids):
        x[r, : len(s)] = torch.tensor(s)
        m[r, : len(s)] = 1
    x, m = x.to(device), m.to(device)
    kw = {"num_beams": beams}
    if new_tokens:
        kw.update(max_new_tokens=new_tokens, min_new_tokens=new_tokens)

    def run():
        with torch.no_grad():
            out = model.generate(input_ids=x, attention_mask=m, **kw)
            return out.cpu()  # waits for the GPU, so the timing holds the whole decode

    t, out = timed(run, repeats)
    tokens = int(((out[:, 1:] != pad)).sum())
    rows = [[i for i in r[1:] if i != pad and i != 0] for r in out.tolist()]
    return {"seconds": t, "tokens": tokens, "tokens_per_s": tokens / t}, rows


def ct2_case(translator, src_tokens, beams, new_tokens, repeats):
    kw = {"beam_size": beams, "max_batch_size": 0}
    if new_tokens:
        kw.update(max_decoding_length=new_tokens, min_decoding_length=new_tokens)
    else:
        kw.update(max_decoding_length=64)

    def run():
        return translator.translate_batch(src_tokens, **kw)

    t, out = timed(run, repeats)
    # CTranslate2 returns hypotheses without </s>; count it as HF does when the row ended on its own.
    tokens = sum(len(r.hypotheses[0]) + (0 if new_tokens else 1) for r in out)
    return {"seconds": t, "tokens": tokens, "tokens_per_s": tokens / t}, [r.hypotheses[0] for r in out]


def convert_ct2(folder, out):
    import ctranslate2

    ctranslate2.converters.TransformersConverter(folder).convert(out, quantization="float32", force=True)
    return out


def ct2_translator(ct2_dir, device, threads):
    """A CTranslate2 translator on `device`, or the reason it cannot run there (a CUDA build of the
    wheel that does not match the machine's CUDA libraries, no GPU, ...)."""
    import ctranslate2

    try:
        if device == "cuda" and ctranslate2.get_cuda_device_count() == 0:
            return None, "ctranslate2.get_cuda_device_count() == 0"
        return ctranslate2.Translator(ct2_dir, device=device, inter_threads=1, intra_threads=threads), None
    except Exception as e:  # noqa: BLE001 -- the message is the result recorded
        return None, f"{type(e).__name__}: {e}"


def bench_folder(name, folder, src_ids, new_tokens, threads, repeats, tmp, device):
    import torch
    from transformers import MarianMTModel, MarianTokenizer

    model = MarianMTModel.from_pretrained(folder, dtype=torch.float32).eval().to(device)
    pad = model.config.pad_token_id
    tok = MarianTokenizer.from_pretrained(folder)
    t0 = time.perf_counter()
    ct2_dir = convert_ct2(folder, os.path.join(tmp, name + "_ct2"))
    convert_s = time.perf_counter() - t0
    translator, ct2_error = ct2_translator(ct2_dir, device, threads)
    if ct2_error:
        print(f"{name}: CTranslate2 on {device} unavailable: {ct2_error}", file=sys.stderr, flush=True)
    results = []
    for batch in (1, 32):
        ids = [src_ids[i % len(src_ids)] for i in range(batch)]
        toks = [tok.convert_ids_to_tokens(s) for s in ids]
        for beams in (1, 4):
            case = {"model": name, "batch": batch, "beams": beams}
            hf, hf_rows = hf_case(model, ids, pad, beams, new_tokens, repeats, device)
            results.append({**case, "engine": f"transformers-{device}", **hf})
            if translator is None:
                results.append({**case, "engine": f"ctranslate2-{device}", "error": ct2_error})
                print(f"{name} batch {batch} beam {beams}: HF {hf['tokens_per_s']:.1f} tok/s",
                      file=sys.stderr, flush=True)
                continue
            try:
                ct, ct_rows = ct2_case(translator, toks, beams, new_tokens, repeats)
            except RuntimeError as e:  # e.g. a CUDA library the wheel was built for is missing
                translator, ct2_error = None, f"{type(e).__name__}: {e}"
                results.append({**case, "engine": f"ctranslate2-{device}", "error": ct2_error})
                print(f"{name}: CTranslate2 on {device} failed: {ct2_error}", file=sys.stderr, flush=True)
                continue
            # Rows whose tokens agree between the engines (a sanity check of the comparison).
            # Compared over the shorter length: with a fixed length HF's last token is the forced
            # </s> (dropped here) while CTranslate2 generates one more ordinary token.
            case["rows_agreeing"] = sum(
                tok.convert_ids_to_tokens(a)[: min(len(a), len(b))] == b[: min(len(a), len(b))]
                for a, b in zip(hf_rows, ct_rows)
            )
            results.append({**case, "engine": f"ctranslate2-{device}", **ct})
            print(f"{name} batch {batch} beam {beams}: HF {hf['tokens_per_s']:.1f} tok/s, "
                  f"CT2 {ct['tokens_per_s']:.1f} tok/s", file=sys.stderr, flush=True)
    return results, convert_s


def random_folder(tmp, bundled):
    import marian_opus_random

    folder = os.path.join(tmp, "opus_random")
    t0 = time.perf_counter()
    marian_opus_random.write_folder(folder)
    write_s = time.perf_counter() - t0
    # Tokenizer files for the converters only: a synthetic 65001-entry vocab, the bundled spm files.
    vocab = {"</s>": 0, "<unk>": 1}
    for i in range(2, 65000):
        vocab[f"t{i}"] = i
    vocab["<pad>"] = 65000
    from transformers import MarianTokenizer

    with open(os.path.join(tmp, "opus_vocab.json"), "w") as f:
        json.dump(vocab, f)
    MarianTokenizer(source_spm=os.path.join(bundled, "source.spm"), target_spm=os.path.join(bundled, "target.spm"),
                    vocab=os.path.join(tmp, "opus_vocab.json")).save_pretrained(folder)
    return folder, write_s


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=os.path.join(HERE, "marian"))
    ap.add_argument("--threads", type=int, default=1, help="CPU threads for both engines")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--random-new-tokens", type=int, default=32)
    ap.add_argument("--skip-random", action="store_true", help="only the bundled model")
    ap.add_argument("--out", help="also write the JSON here")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                    help="where both engines run (cuda: PyTorch's and CTranslate2's CUDA builds; a "
                         "CTranslate2 wheel that cannot run there is recorded with its error)")
    args = ap.parse_args()
    import ctranslate2
    import torch
    import transformers
    from transformers import MarianTokenizer

    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    tok = MarianTokenizer.from_pretrained(args.model)
    with open(os.path.join(args.model, "data", "heldout.tsv"), encoding="utf8") as f:
        words = [line.split("\t")[0] for line in f if line.strip()][:64]
    src = [tok(w)["input_ids"] for w in words]
    doc = {
        "versions": {"transformers": transformers.__version__, "torch": torch.__version__,
                     "ctranslate2": ctranslate2.__version__, "python": platform.python_version()},
        "machine": {"cpus": os.cpu_count(), "load_average_start": os.getloadavg(), "threads": args.threads,
                    "device": args.device,
                    "gpu": torch.cuda.get_device_name(0) if args.device == "cuda" else None},
        "method": "median of --repeats after one warm-up; tokens = returned best rows without start/padding",
        "results": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        res, conv = bench_folder("bundled", args.model, src, None, args.threads, args.repeats, tmp,
                                 args.device)
        doc["results"] += res
        doc["ct2_convert_s"] = {"bundled": conv}
        if not args.skip_random:
            folder, write_s = random_folder(tmp, args.model)
            rsrc = [[(97 * i + 13 * j) % 64000 + 2 for j in range(11)] + [0] for i in range(32)]
            res, conv = bench_folder("opus_random", folder, rsrc, args.random_new_tokens, args.threads,
                                     args.repeats, tmp, args.device)
            doc["results"] += res
            doc["ct2_convert_s"]["opus_random"] = conv
            doc["opus_random_write_s"] = write_s
    doc["machine"]["load_average_end"] = os.getloadavg()
    text = json.dumps(doc, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    sys.exit(main())
