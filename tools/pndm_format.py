"""Reader and writer for pndm's single-file model format (shared by the tools).

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
ST_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "F64": np.float64}


class FormatError(Exception):
    """A file that is not what it should be; the message names it."""


def read_safetensors(path):
    """-> (dict name -> float numpy array (F32/F16/F64; BF16 widened to F32), metadata dict)."""
    if not os.path.exists(path):
        hint = " (broken link: incomplete Hub download?)" if os.path.islink(path) else ""
        raise FormatError(f"{path}: not found{hint}")
    size = os.path.getsize(path)
    if size < 8:
        raise FormatError(f"{path}: too short for a safetensors file ({size} bytes)")
    buf = np.memmap(path, dtype=np.uint8, mode="r")
    (hlen,) = struct.unpack("<Q", bytes(buf[:8]))
    if hlen > size - 8 or hlen > 100 << 20:
        raise FormatError(f"{path}: header length {hlen} exceeds the file size {size}")
    try:
        header = json.loads(bytes(buf[8:8 + hlen]).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FormatError(f"{path}: invalid safetensors header: {e}") from e
    if not isinstance(header, dict):
        raise FormatError(f"{path}: invalid safetensors header: not a JSON object")
    meta = header.pop("__metadata__", None) or {}
    base, data_len = 8 + hlen, size - 8 - hlen
    out = {}
    for name, info in header.items():
        try:
            dt, shape, (a, b) = info["dtype"], [int(s) for s in info["shape"]], info["data_offsets"]
        except (TypeError, KeyError, ValueError) as e:
            raise FormatError(f"{path}: tensor '{name}': malformed header entry") from e
        if dt not in ST_DTYPES:
            raise FormatError(f"{path}: tensor '{name}': dtype {dt} not supported "
                               f"(expected one of {', '.join(ST_DTYPES)})")
        npdt = np.dtype(ST_DTYPES[dt]).newbyteorder("<")
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if any(s < 0 for s in shape) or not (0 <= a <= b <= data_len) or b - a != count * npdt.itemsize:
            raise FormatError(f"{path}: tensor '{name}': data_offsets [{a}, {b}] do not fit shape "
                               f"{shape} {dt} in {data_len} data bytes")
        arr = np.frombuffer(buf, dtype=npdt, count=count, offset=base + a).reshape(shape)
        if dt == "BF16":
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        out[name] = np.array(arr)  # own the memory (the memmap is closed afterwards)
    del buf
    return out, meta


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


def weights_sha256(tensors):
    """The weights id pndm stores in its outputs (pndm_model_sha256; src/core/tensors.h tt_scan):
    tensors is name -> numpy array (float32, float16) or name -> (dtype name, shape, raw
    little-endian C-order bytes). SHA-256 of "pndm-weights-v1\n" followed, per tensor in
    bytewise name order, by "<sha256 of data> <dtype> [<d0>,<d1>,...] <len>:<name>\n"."""
    import hashlib
    np_names = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16"}
    h = hashlib.sha256(b"pndm-weights-v1\n")
    for name in sorted(tensors, key=lambda k: k.encode("utf-8")):
        t = tensors[name]
        if isinstance(t, tuple):
            dtype, shape, data = t
        else:
            a = np.ascontiguousarray(t)
            dtype, shape, data = np_names[a.dtype], a.shape, a.astype(a.dtype.newbyteorder("<")).tobytes()
        nb = name.encode("utf-8")
        line = "%s %s [%s] %d:" % (hashlib.sha256(data).hexdigest(), dtype, ",".join(str(int(d)) for d in shape),
                                   len(nb))
        h.update(line.encode("ascii") + nb + b"\n")
    return h.hexdigest()


def clean_config(cfg):
    """Drop diffusers' private keys (_class_name, _diffusers_version, ...) except _class_name."""
    out = {k: v for k, v in dict(cfg).items() if not k.startswith("_") or k == "_class_name"}
    return out



def read_model_file(path):
    """Read a pndm model file: (state_dict name -> float32 numpy array, unet_config, scheduler_config or None)."""
    sd, meta = read_safetensors(path)
    if meta.get("format") != "pndm" or "pndm.unet_config" not in meta:
        raise FormatError(f"{path}: not a pndm model file (no pndm metadata)")
    sched = json.loads(meta["pndm.scheduler_config"]) if "pndm.scheduler_config" in meta else None
    return {k: v.astype(np.float32) for k, v in sd.items()}, json.loads(meta["pndm.unet_config"]), sched


def diffusers_unet(path):
    """The diffusers UNet2DModel (eval mode, float32, CPU) of a pndm model file, and its scheduler config."""
    import torch
    from diffusers import UNet2DModel
    sd, cfg, sched = read_model_file(path)
    model = UNet2DModel.from_config({k: v for k, v in cfg.items() if not k.startswith("_")})
    model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in sd.items()}, strict=True)
    return model.eval(), sched
