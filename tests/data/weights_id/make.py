"""Writes the fixtures of tests/test_weights_id.c from ../hostile/tiny.safetensors (a pndm single
file): the same weights as a diffusers model folder (config.json + diffusion_pytorch_model.safetensors
with the tensors in reverse name order and no metadata), the same with one weight changed by one
bit, and expected.txt: the weights id computed here by tools/pndm_format.weights_sha256 (an
implementation apart from the C one). Run once: python3 tests/data/weights_id/make.py"""
import json
import os
import struct
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "tools"))
from pndm_format import read_model_file, weights_sha256  # noqa: E402


def write_plain(path, sd):
    header, blobs, off = {}, [], 0
    for name in sorted(sd, reverse=True):
        b = np.ascontiguousarray(sd[name], dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(sd[name].shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    hb = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)) + hb + b"".join(blobs))


sd, cfg, _ = read_model_file(os.path.join(HERE, "..", "hostile", "tiny.safetensors"))
for sub, change in (("folder", False), ("changed", True)):
    d = os.path.join(HERE, sub)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(dict(cfg, _class_name="UNet2DModel"), f, indent=1)
    w = {k: v.copy() for k, v in sd.items()}
    if change:
        v = w["conv_out.bias"].view(np.uint32)
        v[0] ^= 1  # the lowest mantissa bit of one weight
    write_plain(os.path.join(d, "diffusion_pytorch_model.safetensors"), w)
    if not change:
        with open(os.path.join(HERE, "expected.txt"), "w") as f:
            f.write(weights_sha256(sd) + "\n")
    else:
        with open(os.path.join(HERE, "expected_changed.txt"), "w") as f:
            f.write(weights_sha256(w) + "\n")
print(open(os.path.join(HERE, "expected.txt")).read().strip(), sum(v.size for v in sd.values()), "parameters")
