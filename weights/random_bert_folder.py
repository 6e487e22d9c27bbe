#!/usr/bin/env python3
"""Writes a BERT folder with the shapes of another one and seeded random weights, for speed runs on
machines where the real checkpoint cannot be fetched or carried (scripts/gpu-bench.sh uses it for
all-MiniLM-L6-v2 on a lent GPU machine: speed depends on shapes only, not on the weight values).

    python3 weights/random_bert_folder.py --like CONFIG_DIR --out DIR

CONFIG_DIR holds config.json (and, copied along when present, the tokenizer and
sentence-transformers files). DIR gets the same files plus model.safetensors from
`BertModel(config)` with torch.manual_seed(0), written by save_pretrained (tensor names as in the
sentence-transformers checkpoint: `embeddings.*`, `encoder.layer.N.*`, `pooler.*`), float32.
"""
import argparse
import os
import shutil

COPIED = ["config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json",
          "modules.json", "sentence_bert_config.json", "config_sentence_transformers.json",
          os.path.join("1_Pooling", "config.json")]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--like", required=True, help="folder with the config.json to copy")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    import torch
    from transformers import BertConfig, BertModel

    if not os.path.isfile(os.path.join(args.like, "config.json")):
        raise SystemExit(f"{args.like}: no config.json")
    for name in COPIED:
        src = os.path.join(args.like, name)
        if os.path.isfile(src):
            os.makedirs(os.path.dirname(os.path.join(args.out, name)) or args.out, exist_ok=True)
            shutil.copyfile(src, os.path.join(args.out, name))
    torch.manual_seed(0)
    config = BertConfig.from_pretrained(args.like)
    model = BertModel(config).eval()
    model.save_pretrained(args.out, safe_serialization=True)
    # save_pretrained rewrites config.json; keep the copied one so loaders see the original fields.
    shutil.copyfile(os.path.join(args.like, "config.json"), os.path.join(args.out, "config.json"))
    print(f"wrote {args.out} ({sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters, random)")


if __name__ == "__main__":
    main()
