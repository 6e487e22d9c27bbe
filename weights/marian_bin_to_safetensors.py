#!/usr/bin/env python3
"""Converts a Hugging Face checkpoint's pytorch_model.bin into model.safetensors, keeping every
tensor's dtype, so heedful (which reads only safetensors) can load the folder.

    pip install torch safetensors
    python weights/marian_bin_to_safetensors.py path/to/opus-mt-en-zh            # writes model.safetensors there
    python weights/marian_bin_to_safetensors.py path/to/pytorch_model.bin --out /tmp/model.safetensors

Older Marian checkpoints (opus-mt-*) ship only pytorch_model.bin. The .bin is loaded with
torch.load(weights_only=True) (no pickled code runs). Shared storage is the pitfall: in a .bin the
tied tensors (model.shared.weight, model.encoder.embed_tokens.weight,
model.decoder.embed_tokens.weight, lm_head.weight) are views of one storage, and safetensors
refuses shared or non-contiguous tensors. This script keeps one copy of each group of tensors
that share storage: when they are equal views of the same bytes, the first name in this order is
kept -- model.shared.weight, then the others sorted -- and the rest are dropped, since
transformers re-ties them on load (tie_word_embeddings / share_encoder_decoder_embeddings);
it refuses (exits non-zero, naming the tensors) when tensors share storage but are different
views (offsets or shapes differ), rather than silently writing a copy whose tie is lost. Dtypes
are kept (F32 stays F32; pass --dtype f16 to round). An existing output is not overwritten
without --force.
"""

import argparse
import os
import sys

TIED_ORDER = ["model.shared.weight", "model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight",
              "lm_head.weight"]


def convert(src, out, dtype=None, force=False):
    import torch
    from safetensors.torch import save_file

    if os.path.isdir(src):
        src = os.path.join(src, "pytorch_model.bin")
    if not os.path.isfile(src):
        raise SystemExit(f"{src}: no such file (expected a pytorch_model.bin or a folder holding one)")
    if out is None:
        out = os.path.join(os.path.dirname(src), "model.safetensors")
    if os.path.exists(out) and not force:
        raise SystemExit(f"{out} exists; pass --force to overwrite")
    state = torch.load(src, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise SystemExit(f"{src}: not a state dict of tensors")
    # Group tensors by storage.
    groups = {}
    for name, t in state.items():
        groups.setdefault(t.untyped_storage().data_ptr(), []).append(name)
    keep = {}
    dropped = []
    for names in groups.values():
        names.sort(key=lambda n: (TIED_ORDER.index(n) if n in TIED_ORDER else len(TIED_ORDER), n))
        first = state[names[0]]
        for other in names[1:]:
            t = state[other]
            same_view = (t.shape == first.shape and t.stride() == first.stride()
                         and t.storage_offset() == first.storage_offset() and t.dtype == first.dtype)
            if not same_view:
                raise SystemExit(f"{src}: tensors {names[0]} {tuple(first.shape)} and {other} {tuple(t.shape)} share "
                                 "storage but are different views; refusing to guess which to keep")
            dropped.append(other)
        keep[names[0]] = first
    tensors = {}
    for name, t in keep.items():
        t = t.contiguous().clone()
        if dtype == "f16" and t.is_floating_point():
            t = t.half()
        tensors[name] = t
    save_file(tensors, out, metadata={"format": "pt"})
    print(f"wrote {out}: {len(tensors)} tensors; dropped tied duplicates {dropped or 'none'}; dtypes "
          f"{sorted({str(t.dtype) for t in tensors.values()})}")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", help="pytorch_model.bin or the folder holding it")
    ap.add_argument("--out", help="model.safetensors to write (default: beside the .bin)")
    ap.add_argument("--dtype", choices=["keep", "f16"], default="keep")
    ap.add_argument("--force", action="store_true", help="overwrite an existing output")
    args = ap.parse_args()
    convert(args.src, args.out, None if args.dtype == "keep" else args.dtype, args.force)


if __name__ == "__main__":
    sys.exit(main())
