#!/usr/bin/env python3
"""Regenerates weights/fixtures/tiny_export_* (needs torch, numpy, safetensors).

A small seeded nn.Module (embedding -> GRU -> linear) is exported with weights/export.py as fp16 and
as fp32; its exact float32 values are written independently with the safetensors package as
tiny_export_expected_f32.safetensors. tests/weights.rs loads the exports and checks them against
the expected values after f16 rounding, so the Rust tests need no torch.

This script also checks export.py itself: the fp16 file read back by the safetensors package equals
the module's weights rounded to fp16, the metadata holds format/arch/config, and exporting the
module, its state dict or NumPy arrays gives identical files.

    python weights/make_fixtures.py
"""

import json
import os
import sys

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export import FORMAT_VERSION, export  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")


class TinyGruClassifier(torch.nn.Module):
    def __init__(self, vocab, hidden, classes):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, hidden)
        self.gru = torch.nn.GRU(hidden, hidden, batch_first=True)
        self.head = torch.nn.Linear(hidden, classes)

    def forward(self, ids):
        h, _ = self.gru(self.embed(ids))
        return self.head(h[:, -1])


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(1234)
    config = {"vocab": 11, "hidden": 6, "classes": 3}
    m = TinyGruClassifier(**config)
    with torch.no_grad():
        # Values that exercise rounding: large, tiny (subnormal in f16), exact ties.
        m.head.bias.copy_(torch.tensor([65504.0, 3.0e-6, 1.0 + 2.0 ** -11]))
    path16 = os.path.join(OUT, "tiny_export_f16.safetensors")
    path32 = os.path.join(OUT, "tiny_export_f32.safetensors")
    expected = os.path.join(OUT, "tiny_export_expected_f32.safetensors")
    export(m, path16, config=config, arch="tiny-gru-classifier")
    export(m, path32, config=config, arch="tiny-gru-classifier", dtype="fp32")
    sd = {k: v.detach().numpy().astype(np.float32) for k, v in m.state_dict().items()}
    save_file(sd, expected, metadata={"source": "weights/make_fixtures.py"})

    # Checks of export.py.
    with safe_open(path16, "np") as f:
        meta = f.metadata()
        assert meta["heedful.format"] == str(FORMAT_VERSION), meta
        assert meta["heedful.arch"] == "tiny-gru-classifier", meta
        assert json.loads(meta["heedful.config"]) == config, meta
        assert sorted(f.keys()) == sorted(sd), (f.keys(), sd.keys())
        for k, v in sd.items():
            got = f.get_tensor(k)
            assert got.dtype == np.float16, (k, got.dtype)
            assert np.array_equal(got, v.astype(np.float16)), k
    for other in (m.state_dict(), sd):
        tmp = os.path.join(OUT, "tmp.safetensors")
        export(other, tmp, config=config, arch="tiny-gru-classifier")
        same = open(tmp, "rb").read() == open(path16, "rb").read()
        os.remove(tmp)
        assert same, "module, state dict and numpy exports differ"
    # bf16: torch's rounding and export.py's numpy rounding agree.
    tmp_t = os.path.join(OUT, "tmp_t.safetensors")
    tmp_n = os.path.join(OUT, "tmp_n.safetensors")
    export(m, tmp_t, config=config, dtype="bf16")
    export(sd, tmp_n, config=config, arch="TinyGruClassifier", dtype="bf16")
    same = open(tmp_t, "rb").read() == open(tmp_n, "rb").read()
    os.remove(tmp_t)
    os.remove(tmp_n)
    assert same, "torch and numpy bf16 rounding differ"
    for p in (path16, path32, expected):
        print(f"{p}: {os.path.getsize(p)} bytes")


if __name__ == "__main__":
    main()
