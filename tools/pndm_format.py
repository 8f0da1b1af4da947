"""Writer for pndm's single-file model format (shared by convert.py and train.py).

A pndm model file is an ordinary safetensors file:
  - tensors: the UNet2DModel state dict, keys exactly as diffusers names them,
    dtype F32 or F16 (BF16 is also accepted by the C loader);
  - __metadata__ (string -> string):
      "format"                : "pndm"
      "pndm.version"          : "1"
      "pndm.unet_config"      : the UNet2DModel config.json, as a JSON string
      "pndm.scheduler_config" : the PNDMScheduler (or DDPM) scheduler_config.json, as a JSON string (optional)
"""
import json
import os
import struct

import numpy as np

FORMAT_VERSION = "1"


def write_model_file(path, state_dict, unet_config, scheduler_config=None, dtype="f32"):
    """state_dict: name -> numpy array (any float dtype). Written atomically."""
    np_dtype = {"f32": np.float32, "f16": np.float16}[dtype]
    st_dtype = {"f32": "F32", "f16": "F16"}[dtype]
    meta = {
        "format": "pndm",
        "pndm.version": FORMAT_VERSION,
        "pndm.unet_config": json.dumps(unet_config, sort_keys=True),
    }
    if scheduler_config is not None:
        meta["pndm.scheduler_config"] = json.dumps(scheduler_config, sort_keys=True)
    header = {"__metadata__": meta}
    blobs = []
    off = 0
    for name in sorted(state_dict):
        arr = np.ascontiguousarray(np.asarray(state_dict[name], dtype=np.float32).astype(np_dtype))
        b = arr.tobytes()
        header[name] = {"dtype": st_dtype, "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    hb = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hb += b" " * ((8 - len(hb) % 8) % 8)  # align data to 8 bytes
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for b in blobs:
            f.write(b)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def clean_config(cfg):
    """Drop diffusers' private keys (_class_name, _diffusers_version, ...) except _class_name."""
    out = {k: v for k, v in dict(cfg).items() if not k.startswith("_") or k == "_class_name"}
    return out


def read_model_file(path):
    """Read a pndm model file: (state_dict name -> float32 numpy array, unet_config, scheduler_config or None).
    F32, F16 and BF16 tensors are accepted, like the C loader."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        base = 8 + n
        meta = header.pop("__metadata__", {}) or {}
        if meta.get("format") != "pndm" or "pndm.unet_config" not in meta:
            raise ValueError(f"{path}: not a pndm model file (no pndm metadata)")
        sd = {}
        for name, info in header.items():
            a, b = info["data_offsets"]
            f.seek(base + a)
            raw = f.read(b - a)
            if info["dtype"] == "BF16":
                arr = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
            else:
                arr = np.frombuffer(raw, dtype={"F32": "<f4", "F16": "<f2"}[info["dtype"]]).astype(np.float32)
            sd[name] = arr.reshape(info["shape"])
    sched = json.loads(meta["pndm.scheduler_config"]) if "pndm.scheduler_config" in meta else None
    return sd, json.loads(meta["pndm.unet_config"]), sched


def diffusers_unet(path):
    """The diffusers UNet2DModel (eval mode, float32, CPU) of a pndm model file, and its scheduler config."""
    import torch
    from diffusers import UNet2DModel
    sd, cfg, sched = read_model_file(path)
    model = UNet2DModel.from_config({k: v for k, v in cfg.items() if not k.startswith("_")})
    model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in sd.items()}, strict=True)
    return model.eval(), sched
