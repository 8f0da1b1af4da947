#!/usr/bin/env python3
"""Make the quality table of weights/README.md: samples from pndm-gen (and a 1000-step DDPM
reference through diffusers) scored by tools/fid.py against the Fashion-MNIST test set.

  /usr/bin/python3 tools/fid_table.py --model weights/fashion_mnist.safetensors \
      --pndm-gen build/pndm-gen -n 1000 [--ddpm] [--out build/fid]

Rows: PNDM (PRK + PLMS) at 10, 20 and 50 steps, --skip-prk-steps at 50 steps, optionally DDPM
ancestral sampling with 1000 steps (diffusers DDPMScheduler + the same UNet, PyTorch), and the
calibration rows (real test images vs training images; Gaussian noise). Prints a Markdown table.
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def fid_score(path, threads):
    out = subprocess.run([sys.executable, os.path.join(HERE, "fid.py"), "--threads", str(threads), "score", "--json", path],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def run_pndm(args, steps, skip_prk, out):
    cmd = [args.pndm_gen, "-m", args.model, "-n", str(steps), "-b", str(args.n), "-s", str(args.seed),
           "-t", str(args.threads), "-q", "--json", "-o", out]
    if skip_prk:
        cmd.append("--skip-prk-steps")
    t0 = time.time()
    res = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    return cmd, time.time() - t0, res


def run_ddpm(args, out):
    """1000-step DDPM ancestral sampling in diffusers (the reference sampler)."""
    import numpy as np
    import torch
    from diffusers import DDPMScheduler
    sys.path.insert(0, HERE)
    from pndm_format import diffusers_unet
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    unet, _ = diffusers_unet(args.model)
    unet.to(dev)
    cfg = unet.config
    sch = DDPMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear")
    sch.set_timesteps(1000)
    g = torch.Generator().manual_seed(args.seed)
    imgs = []
    t0 = time.time()
    bs = args.ddpm_batch   # part of the sample definition: the generator's stream depends on it
    with torch.no_grad():
        for start in range(0, args.n, bs):
            b = min(bs, args.n - start)
            s = cfg["sample_size"]
            # all noise from one CPU generator, whatever the device: the same draws on CPU and GPU
            # for the same --ddpm-batch (the samples still differ by float rounding, TF32 on GPUs)
            x = torch.randn((b, cfg["in_channels"], s, s), generator=g).to(dev)
            for t in sch.timesteps:
                eps = unet(x, t).sample
                # what diffusers' DDPMScheduler.step draws for t > 0 (randn_tensor on the CPU generator)
                x = sch.step(eps, t, x, generator=g).prev_sample
            imgs.append((x / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy())
    np.save(out, np.concatenate(imgs).astype(np.float32))
    return time.time() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=os.path.join(HERE, "..", "weights", "fashion_mnist.safetensors"))
    ap.add_argument("--pndm-gen", default=os.path.join(HERE, "..", "build", "pndm-gen"))
    ap.add_argument("-n", type=int, default=1000, help="samples per row")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ddpm", action="store_true", help="also the 1000-step DDPM reference row (slow)")
    ap.add_argument("--device", default="cpu", help="torch device for the DDPM reference (cpu, cuda)")
    ap.add_argument("--ddpm-only", metavar="NPY", help="only draw the DDPM reference samples into NPY and exit "
                    "(e.g. on a GPU machine); score them later with --ddpm-from")
    ap.add_argument("--ddpm-batch", type=int, default=1000,
                    help="DDPM images per batch (default 1000; the shipped row used 1000)")
    ap.add_argument("--ddpm-from", metavar="NPY", help="DDPM row: score these samples instead of drawing them")
    ap.add_argument("--ddpm-wall", default="", help="with --ddpm-from: the wall time to print for that row")
    ap.add_argument("--out", default="build/fid")
    args = ap.parse_args()
    if args.ddpm_only:
        wall = run_ddpm(args, args.ddpm_only)
        print(f"DDPM 1000 steps, {args.n} samples on {args.device}: {wall:.1f} s -> {args.ddpm_only}")
        return
    os.makedirs(args.out, exist_ok=True)
    rows = []
    for steps, skip in [(10, False), (20, False), (50, False), (50, True)]:
        out = os.path.join(args.out, f"pndm_s{steps}{'_skipprk' if skip else ''}.npy")
        cmd, wall, res = run_pndm(args, steps, skip, out)
        sc = fid_score(out, args.threads)
        name = f"PNDM {steps} steps" + (" (--skip-prk-steps)" if skip else " (PRK + PLMS)")
        rows.append((name, args.n, res["unet_calls"], sc, f"{wall:.0f} s", " ".join(os.path.relpath(c) if os.path.exists(c) else c for c in cmd)))
        print(name, json.dumps(sc), file=sys.stderr, flush=True)
    if args.ddpm_from:
        sc = fid_score(args.ddpm_from, args.threads)
        rows.append(("DDPM ancestral 1000 steps (diffusers)", args.n, 1000, sc, args.ddpm_wall,
                     f"tools/fid_table.py --ddpm-only {args.ddpm_from} -n {args.n} --seed {args.seed} --device {args.device}"))
    elif args.ddpm:
        out = os.path.join(args.out, "ddpm_1000.npy")
        wall = run_ddpm(args, out)
        sc = fid_score(out, args.threads)
        rows.append(("DDPM ancestral 1000 steps (diffusers)", args.n, 1000, sc, f"{wall:.0f} s", "tools/fid_table.py --ddpm"))
    print("| sampler | samples | UNet calls | FD (lower is better) | classes >= 1% | class entropy (bits) | wall |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, n, calls, sc, wall, _ in rows:
        print(f"| {name} | {n} | {calls} | {sc['fid']:.2f} | {sc['classes_covered']} | {sc['entropy_bits']:.3f} | {wall} |")
    print()
    print("Commands:")
    for r in rows:
        print(f"    {r[5]}")


if __name__ == "__main__":
    main()
