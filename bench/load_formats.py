#!/usr/bin/env python3
"""Load time of the google/ddpm-cifar10-32 architecture (35.7 M parameters, bench/make_models.py)
as .safetensors, as the same weights saved with torch.save (.bin, zip format) and as the legacy
(pre-1.6) .bin, in pndm (pndm_model_load + free: parse, checks, NaN scan, bind/pack), warm and
cold page cache. Needs torch (to write the .bin files) and a built build/libpndm.a.
    /work/venv-ref/bin/python bench/load_time.py [--runs 9] [--models-dir build-bench/models]"""
import argparse
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--models-dir", default=os.path.join(ROOT, "build-bench", "models"))
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    a = ap.parse_args()
    src = os.path.join(a.models_dir, "cifar10")
    if not os.path.exists(os.path.join(src, "diffusion_pytorch_model.safetensors")):
        subprocess.check_call([sys.executable, os.path.join(HERE, "make_models.py"), "--models", "cifar10",
                               "--out", a.models_dir, "--no-onnx"])
    import torch
    from safetensors.torch import load_file
    sd = load_file(os.path.join(src, "diffusion_pytorch_model.safetensors"))
    out = {}
    for kind, legacy in (("bin", False), ("bin_legacy", True)):
        d = os.path.join(a.models_dir, f"cifar10_{kind}")
        if not os.path.exists(os.path.join(d, "diffusion_pytorch_model.bin")):
            os.makedirs(d, exist_ok=True)
            shutil.copy(os.path.join(src, "config.json"), d)
            torch.save(sd, os.path.join(d, "diffusion_pytorch_model.bin"), _use_new_zipfile_serialization=not legacy)
        out[kind] = d
    exe = os.path.join(a.build, "load_formats")
    subprocess.check_call(["cc", "-O2", "-I", os.path.join(ROOT, "include"), os.path.join(HERE, "load_formats.c"),
                           os.path.join(a.build, "libpndm.a"), "-lpng", "-lcjson", "-lm", "-lpthread", "-o", exe])
    models = [src, out["bin"], out["bin_legacy"]]
    for f in models:
        w = [p for p in os.listdir(f) if p.startswith("diffusion_pytorch_model")][0]
        print(f"{f}/{w}: {os.path.getsize(os.path.join(f, w)) / 2**20:.1f} MiB")
    subprocess.check_call(["nice", "-n", "0", exe, str(a.runs)] + models)
    subprocess.check_call(["nice", "-n", "0", exe, "--cold", str(a.runs)] + models)


if __name__ == "__main__":
    main()
