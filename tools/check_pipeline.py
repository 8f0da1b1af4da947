#!/usr/bin/env python3
"""Check pndm-gen against diffusers' PNDMPipeline on one pndm model file: same seed, batch and
steps, images compared as floats and as 8-bit pixels. Exit status 0 when they agree.

  /usr/bin/python3 tools/check_pipeline.py                        # the bundled default model
  /usr/bin/python3 tools/check_pipeline.py -m model.safetensors -b 4 -s 42 -n 50 [--skip-prk-steps]

diffusers side: PNDMPipeline(UNet2DModel from the file, PNDMScheduler from the file's scheduler
config)(batch_size=B, num_inference_steps=N, generator=torch.manual_seed(S), output_type="np").
Needs PyTorch and diffusers (tools only).
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from pndm_format import FormatError, diffusers_unet  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", default=os.path.join(HERE, "..", "weights", "fashion_mnist.safetensors"))
    ap.add_argument("--pndm-gen", default=os.path.join(HERE, "..", "build", "pndm-gen"))
    ap.add_argument("-b", "--batch", type=int, default=4)
    ap.add_argument("-s", "--seed", type=int, default=42)
    ap.add_argument("-n", "--steps", type=int, default=50)
    ap.add_argument("--skip-prk-steps", action="store_true")
    ap.add_argument("-t", "--threads", type=int, default=1)
    ap.add_argument("--tolerance", type=float, default=1e-4, help="max |image diff| allowed (images in [0, 1])")
    args = ap.parse_args()

    import torch
    import safetensors.torch  # noqa: F401  (diffusers 0.30 expects it imported)
    from diffusers import PNDMPipeline, PNDMScheduler
    torch.set_num_threads(args.threads)
    try:
        unet, sched_cfg = diffusers_unet(args.model)
    except FormatError as e:
        print(f"check_pipeline.py: error: {e}", file=sys.stderr)
        return 2
    sched_cfg = dict(sched_cfg or {})
    if args.skip_prk_steps:
        sched_cfg["skip_prk_steps"] = True
    sched = PNDMScheduler.from_config({k: v for k, v in sched_cfg.items() if not k.startswith("_")})
    pipe = PNDMPipeline(unet=unet, scheduler=sched)
    with torch.no_grad():
        ref = pipe(batch_size=args.batch, num_inference_steps=args.steps,
                   generator=torch.manual_seed(args.seed), output_type="np").images
    with tempfile.TemporaryDirectory(prefix="pndm-check-") as tmp:
        out = os.path.join(tmp, "out.npy")
        cmd = [args.pndm_gen, "-m", args.model, "-b", str(args.batch), "-s", str(args.seed), "-n", str(args.steps),
               "-t", str(args.threads), "-q", "-o", out] + (["--skip-prk-steps"] if args.skip_prk_steps else [])
        print("pndm-gen:", " ".join(cmd))
        subprocess.run(cmd, check=True)
        got = np.load(out)
    if got.shape != ref.shape:
        print(f"FAILED: pndm-gen images {got.shape}, diffusers {ref.shape}")
        return 1
    diff = float(np.abs(got.astype(np.float64) - ref).max())
    q = lambda a: np.clip(np.round(a * 255), 0, 255).astype(np.uint8)  # noqa: E731  (diffusers' numpy_to_pil)
    px = int((q(got) != q(ref)).sum())
    ok = diff <= args.tolerance
    print(f"{os.path.relpath(args.model)}: batch {args.batch}, seed {args.seed}, {args.steps} steps"
          f"{' (skip-prk)' if args.skip_prk_steps else ''}: images max|pndm-gen - diffusers| = {diff:.3g} "
          f"(tolerance {args.tolerance:g}); 8-bit pixels differing: {px} of {ref.size} {'OK' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
