#!/usr/bin/env python3
"""Export PyTorch weights to a safetensors file that heedful loads.

The file's metadata records the heedful format version (`heedful.format`), the architecture name
(`heedful.arch`) and the architecture's config as JSON (`heedful.config`); heedful checks the
version on load and asks for a re-export when a file is newer than it knows.

As a library (from the repository root, or with weights/ on sys.path):

    from export import export
    export(model, "model.safetensors", config={"vocab": 32000, "hidden": 256}, dtype="fp16")
    export(model.state_dict(), "model.safetensors", arch="lstm-seq2seq", config=cfg)

`module_or_state_dict` is an nn.Module, a state dict of torch tensors, or a dict of NumPy arrays
(no torch needed then). Floating tensors are written as `dtype` (fp16 by default, fp32 or bf16);
integer tensors are kept as they are. Tied (shared) weights are written once per name.

From the command line:

    python weights/export.py CHECKPOINT OUT.safetensors --arch NAME [--config CONFIG] [--dtype fp16]

CHECKPOINT is a torch.save file (.pt/.bin; a state dict, or a dict holding one under --key) or a
NumPy .npz; CONFIG is a JSON file or a JSON string. Then check the result with
`heedful inspect OUT.safetensors`.
"""

import argparse
import json
import struct
import sys

FORMAT_VERSION = 1

_DTYPES = {
    "fp16": "F16", "float16": "F16", "half": "F16", "f16": "F16",
    "fp32": "F32", "float32": "F32", "float": "F32", "f32": "F32",
    "bf16": "BF16", "bfloat16": "BF16",
}


def _dtype_name(dtype):
    """Normalizes "fp16", "bf16", "fp32" or a torch dtype to the safetensors name."""
    key = str(dtype).replace("torch.", "").lower()
    if key not in _DTYPES:
        raise ValueError(f"dtype {dtype!r}: use fp16, bf16 or fp32")
    return _DTYPES[key]


def _state_dict(obj):
    if hasattr(obj, "state_dict") and callable(obj.state_dict):
        return obj.state_dict()
    if isinstance(obj, dict):
        return obj
    raise TypeError(
        f"export takes an nn.Module or a dict of tensors, not {type(obj).__name__}")


def _bf16_bits(f32):
    """float32 NumPy array -> bfloat16 bits (uint16), rounded to nearest even."""
    import numpy as np
    u = np.ascontiguousarray(f32, dtype="<f4").view("<u4").astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    nan = np.isnan(f32.reshape(-1)).reshape(u.shape)
    rounded = np.where(nan, (u >> 16) | 0x40, rounded)
    return rounded.astype("<u2")


_NUMPY_NAMES = {
    "float64": "F64", "float32": "F32", "float16": "F16", "int64": "I64", "int32": "I32",
    "int16": "I16", "int8": "I8", "uint8": "U8", "uint16": "U16", "uint32": "U32",
    "uint64": "U64", "bool": "BOOL",
}


def _to_bytes(name, value, target):
    """One tensor -> (safetensors dtype, shape, little-endian bytes)."""
    import numpy as np
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        if value.is_sparse or value.is_quantized:
            raise TypeError(f"tensor {name!r} is sparse or quantized; export dense weights")
        t = value.detach().cpu().contiguous()
        if t.is_floating_point():
            if target == "BF16":
                bits = t.to(torch.bfloat16).view(torch.int16).numpy().view("<u2")
                return "BF16", list(t.shape), bits.tobytes()
            t = t.to(torch.float16 if target == "F16" else torch.float32)
        elif t.dtype == torch.bool:
            t = t.to(torch.uint8)
            arr = t.numpy()
            return "BOOL", list(t.shape), arr.tobytes()
        arr = t.numpy()
    elif isinstance(value, np.ndarray) or np.isscalar(value):
        arr = np.asarray(value)
        if arr.dtype.kind == "f":
            if target == "BF16":
                return "BF16", list(arr.shape), _bf16_bits(arr.astype(np.float32)).tobytes()
            arr = arr.astype(np.float16 if target == "F16" else np.float32)
    else:
        raise TypeError(f"{name!r} is a {type(value).__name__}, not a tensor or array")
    st = _NUMPY_NAMES.get(arr.dtype.name)
    if st is None:
        raise TypeError(f"tensor {name!r} has dtype {arr.dtype}, which safetensors cannot hold")
    arr = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<"))
    return st, list(arr.shape), arr.tobytes()


def export(module_or_state_dict, path, config=None, dtype="fp16", arch=None, metadata=None):
    """Writes `module_or_state_dict` to `path` as safetensors with heedful's metadata.

    config: the architecture's config (a dict, stored as JSON under `heedful.config`).
    dtype: what floating tensors become: "fp16" (default), "bf16" or "fp32".
    arch: the architecture name (`heedful.arch`); defaults to config["arch"], else the module's
          class name.
    metadata: extra string key/values to store.
    Returns a summary dict (tensors, bytes, path).
    """
    target = _dtype_name(dtype)
    config = dict(config or {})
    if arch is None:
        arch = config.get("arch")
    if arch is None and not isinstance(module_or_state_dict, dict):
        arch = type(module_or_state_dict).__name__
    if arch is None:
        raise ValueError("pass arch= (the architecture name) when exporting a bare state dict")
    state = _state_dict(module_or_state_dict)

    entries, chunks, offset = {}, [], 0
    for name, value in state.items():
        if not isinstance(name, str) or name == "__metadata__":
            raise ValueError(f"bad tensor name {name!r}")
        st, shape, data = _to_bytes(name, value, target)
        entries[name] = {"dtype": st, "shape": shape, "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)

    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    meta.update({
        "heedful.format": str(FORMAT_VERSION),
        "heedful.arch": str(arch),
        "heedful.config": json.dumps(config, sort_keys=True),
    })
    header = json.dumps({"__metadata__": meta, **entries}, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)))
        f.write(header)
        for data in chunks:
            f.write(data)
    return {"path": str(path), "tensors": len(entries), "bytes": 8 + len(header) + offset}


def _load_checkpoint(path, key):
    if str(path).endswith(".npz"):
        import numpy as np
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    import torch
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if key:
        obj = obj[key]
    elif isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    return obj


def main(argv=None):
    p = argparse.ArgumentParser(
        prog="python weights/export.py",
        description=__doc__ + f"\nThis exporter writes heedful format {FORMAT_VERSION}.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Example: python weights/export.py model.pt model.safetensors --arch gru-seq2seq "
               "--config '{\"hidden\": 256}'")
    p.add_argument("checkpoint", help="torch.save file (.pt/.bin) holding a state dict, or a .npz")
    p.add_argument("out", help="output .safetensors path")
    p.add_argument("--arch", required=True, help="architecture name, stored as heedful.arch")
    p.add_argument("--config", default="{}",
                   help="architecture config: a JSON file or a JSON string (heedful.config)")
    p.add_argument("--dtype", default="fp16", choices=["fp16", "bf16", "fp32"],
                   help="dtype of floating tensors (default fp16)")
    p.add_argument("--key", default=None,
                   help="key of the state dict inside the checkpoint (default: the checkpoint "
                        "itself, or its 'state_dict' entry)")
    a = p.parse_args(argv)
    text = a.config
    if not text.lstrip().startswith("{"):
        with open(text) as f:
            text = f.read()
    config = json.loads(text)
    summary = export(_load_checkpoint(a.checkpoint, a.key), a.out, config=config, dtype=a.dtype,
                     arch=a.arch)
    print(f"wrote {summary['path']}: {summary['tensors']} tensors, {summary['bytes']} bytes")


if __name__ == "__main__":
    main()
