#!/usr/bin/env python3
"""Train pndm's bundled default model: a diffusers UNet2DModel on Fashion-MNIST (28x28, gray).

Standard DDPM objective: epsilon prediction, linear betas 1e-4..0.02, 1000 training steps,
AdamW, an EMA of the weights, fixed seeds. Resumable exactly: the data order, the noise and the
timesteps of step k depend only on (seed, k), so resuming from a checkpoint replays the same run.

  python3 tools/train.py --out train_run --steps 10000          # start or resume (CPU)
  python3 tools/train.py --out train_run --device cuda --batch 128 --steps 7000 --ckpt-every 2000 \
      --threads 4                                                # the shipped model's run (GPU)
  python3 tools/train.py --out train_run --export weights/fashion_mnist.safetensors --dtype f32
  python3 tools/train.py ... --fid 1000                          # also FD + class coverage per checkpoint

Needs PyTorch and diffusers (tools only; never needed by the C build or tests).
Dataset: Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist, or $PNDM_FASHION_MNIST).
"""
import argparse
import copy
import gzip
import json
import os
import sys
import time

import numpy as np
import torch
import safetensors.torch  # noqa: F401  (diffusers 0.30 save_pretrained needs it imported)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pndm_format import write_model_file, clean_config  # noqa: E402

DATA_DIR = os.environ.get("PNDM_FASHION_MNIST", "/usr/share/datasets/fashion-mnist")

UNET_CONFIG = dict(
    sample_size=28,
    in_channels=1,
    out_channels=1,
    layers_per_block=1,
    block_out_channels=(32, 64, 64),
    down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
    up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
    norm_num_groups=8,
    attention_head_dim=None,
    downsample_padding=1,
    flip_sin_to_cos=True,
    freq_shift=0,
)

SCHEDULER_CONFIG = {
    "_class_name": "PNDMScheduler",
    "num_train_timesteps": 1000,
    "beta_start": 0.0001,
    "beta_end": 0.02,
    "beta_schedule": "linear",
    "trained_betas": None,
    "skip_prk_steps": False,
    "set_alpha_to_one": False,
    "prediction_type": "epsilon",
    "timestep_spacing": "leading",
    "steps_offset": 0,
}


def load_idx_images(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, n, h, w = np.frombuffer(data[:16], dtype=">u4")
    assert magic == 2051, path
    return np.frombuffer(data[16:], dtype=np.uint8).reshape(n, h, w)


def make_unet():
    from diffusers import UNet2DModel
    return UNet2DModel(**UNET_CONFIG)


def linear_schedule(T=1000):
    betas = torch.linspace(1e-4, 0.02, T, dtype=torch.float32)
    return torch.cumprod(1.0 - betas, dim=0)


def export(model, path, dtype):
    sd = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    cfg = clean_config(model.config)
    write_model_file(path, sd, cfg, SCHEDULER_CONFIG, dtype=dtype)


def save_checkpoint(path, step, model, ema, opt, losses):
    tmp = path + ".tmp"
    torch.save({"step": step, "model": model.state_dict(), "ema": ema.state_dict(),
                "opt": opt.state_dict(), "losses": losses, "unet_config": UNET_CONFIG}, tmp)
    os.replace(tmp, path)


@torch.no_grad()
def sample_pndm(model, n, steps, seed, chunk=500):
    """n samples (n, 28, 28) in [-1, 1], float32 on the CPU: diffusers' PNDM loop on the model's
    device, noise from one CPU generator (chunks of `chunk` images)."""
    from diffusers import PNDMScheduler
    dev = next(model.parameters()).device
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(0, n, chunk):
        # a fresh scheduler per chunk: PNDMScheduler keeps the previous model outputs (ets)
        sch = PNDMScheduler(**{k: v for k, v in SCHEDULER_CONFIG.items() if not k.startswith("_")})
        sch.set_timesteps(steps)
        x = torch.randn((min(chunk, n - i), 1, 28, 28), generator=g).to(dev)
        for t in sch.timesteps:
            x = sch.step(model(x, t).sample, t, x).prev_sample
        out.append(x[:, 0].cpu())
    return torch.cat(out)


def sample_grid(model, path, n=16, steps=50, seed=0):
    from PIL import Image
    img = ((sample_pndm(model, n, steps, seed).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    side = int(np.ceil(np.sqrt(n)))
    grid = np.zeros((side * 28, side * 28), np.uint8)
    for i in range(n):
        r, c = divmod(i, side)
        grid[r * 28:(r + 1) * 28, c * 28:(c + 1) * 28] = img[i]
    Image.fromarray(grid).save(path)


class CheckpointFD:
    """--fid N: N samples from the EMA (PNDM, --fid-steps steps, fixed seed) scored by tools/fid.py
    at each checkpoint: FD against the test set, class coverage."""

    def __init__(self, n, steps, seed=1):
        import fid
        from types import SimpleNamespace
        self.scorer = fid.Scorer(SimpleNamespace(weights=fid.WEIGHTS, data_dir=DATA_DIR))
        self.n, self.steps, self.seed = n, steps, seed

    def __call__(self, model):
        x = sample_pndm(model, self.n, self.steps, self.seed)
        return self.scorer.score((x / 2 + 0.5).clamp(0, 1).double().numpy())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="train_run", help="run directory (checkpoints, logs, samples)")
    ap.add_argument("--steps", type=int, default=10000, help="total optimizer steps")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=2, help="PyTorch CPU threads")
    ap.add_argument("--device", default="cpu", help="torch device for the model (cpu, cuda); the data order, "
                    "flips, timesteps and noise are drawn on the CPU either way")
    ap.add_argument("--stop-at", type=int, default=0,
                    help="stop after this step (a checkpoint boundary) without changing the --steps schedule; "
                         "a later run with the same --steps continues exactly")
    ap.add_argument("--ckpt-every", type=int, default=1000)
    ap.add_argument("--export", help="only export the EMA weights of the latest checkpoint to this file")
    ap.add_argument("--export-dir", help="with --export: also write a diffusers model folder here")
    ap.add_argument("--dtype", default="f16", choices=["f16", "f32"])
    ap.add_argument("--bench", type=int, default=0, help="time N steps and exit")
    ap.add_argument("--fid", type=int, default=0, metavar="N",
                    help="at each checkpoint, score N EMA samples with tools/fid.py (FD, class coverage; "
                         "needs the test set beside the training set); 0 = off")
    ap.add_argument("--fid-steps", type=int, default=20, help="PNDM steps of the --fid samples")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    ckpt_path = os.path.join(args.out, "checkpoint.pt")

    dev = torch.device(args.device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(args.seed)
    model = make_unet().to(dev)
    ema = copy.deepcopy(model).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    step, losses = 0, []
    if os.path.exists(ckpt_path):
        ck = torch.load(ckpt_path, map_location=dev)
        model.load_state_dict(ck["model"])
        ema.load_state_dict(ck["ema"])
        opt.load_state_dict(ck["opt"])
        step, losses = ck["step"], ck["losses"]
        print(f"resumed from step {step}", flush=True)

    if args.export:
        export(ema, args.export, args.dtype)
        if args.export_dir:
            ema.save_pretrained(args.export_dir, safe_serialization=True)
            with open(os.path.join(args.export_dir, "scheduler_config.json"), "w") as f:
                json.dump(SCHEDULER_CONFIG, f, indent=2)
        print(f"exported EMA weights of step {step} to {args.export}")
        return

    nparams = sum(p.numel() for p in model.parameters())
    print(f"UNet2DModel {nparams/1e6:.3f} M parameters, config {json.dumps(UNET_CONFIG)}", flush=True)

    imgs = load_idx_images(os.path.join(DATA_DIR, "train-images-idx3-ubyte.gz"))
    data = torch.from_numpy(imgs.astype(np.float32) / 127.5 - 1.0).unsqueeze(1)  # (N,1,28,28) in [-1,1]
    N = data.shape[0]
    mparams, eparams = list(model.parameters()), list(ema.parameters())
    pending = []  # losses still on the device: read back every 50 steps, not every step
    perm, perm_epoch = None, -1
    per_epoch = N // args.batch
    acp = linear_schedule()
    log = open(os.path.join(args.out, "loss.log"), "a")

    fd_eval = CheckpointFD(args.fid, args.fid_steps) if args.fid > 0 else None
    t0 = time.time()
    bench_start = step
    model.train()
    end = min(args.steps, args.stop_at) if args.stop_at > 0 else args.steps
    while step < end:
        # Everything random in step k comes from (seed, k): exact resume without RNG state.
        epoch, k = divmod(step, per_epoch)
        if epoch != perm_epoch:
            perm = torch.randperm(N, generator=torch.Generator().manual_seed(args.seed * 7919 + epoch))
            perm_epoch = epoch
        idx = perm[k * args.batch:(k + 1) * args.batch]
        g = torch.Generator().manual_seed(args.seed * 1000003 + step)
        x0 = data[idx]
        flip = torch.rand(args.batch, generator=g) < 0.5
        x0 = torch.where(flip[:, None, None, None], x0.flip(-1), x0)
        t = torch.randint(0, 1000, (args.batch,), generator=g)
        noise = torch.randn(x0.shape, generator=g)
        a = acp[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        xt, t, noise = xt.to(dev), t.to(dev), noise.to(dev)

        lr = args.lr * min(1.0, (step + 1) / args.warmup)
        # cosine decay to 10% over the run
        prog = step / max(1, args.steps)
        lr = float(lr * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * prog))))  # a Python float: numpy scalars in the checkpoint would tie it to one numpy major version
        for gr in opt.param_groups:
            gr["lr"] = lr
        pred = model(xt, t).sample
        loss = torch.nn.functional.mse_loss(pred, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        decay = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():  # ema = ema*decay + model*(1-decay), all tensors in one call each
            torch._foreach_mul_(eparams, decay)
            torch._foreach_add_(eparams, mparams, alpha=1 - decay)
        pending.append(loss.detach())
        if step % 50 == 0 or step == end:
            losses.extend(torch.stack(pending).cpu().tolist())
            pending = []
        if step % 50 == 0:
            avg = float(np.mean(losses[-50:]))
            el = time.time() - t0
            msg = f"step {step} loss {avg:.4f} lr {lr:.2e} {el/(step-bench_start):.3f}s/step"
            print(msg, flush=True)
            log.write(msg + "\n")
            log.flush()
        if args.bench and step - bench_start == min(10, args.bench // 2):  # skip warm-up (cudnn autotune)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t_warm, warm_steps = time.time(), step - bench_start
        if args.bench and step - bench_start >= args.bench:
            if dev.type == "cuda":
                torch.cuda.synchronize()
            print(f"bench: {(time.time()-t_warm)/(step-bench_start-warm_steps):.4f} s/step", flush=True)
            return
        if step % args.ckpt_every == 0 or step == end:
            save_checkpoint(ckpt_path, step, model, ema, opt, losses)
            export(ema, os.path.join(args.out, f"ema_{step:06d}.safetensors"), "f32")
            try:
                ema_eval = ema
                sample_grid(ema_eval, os.path.join(args.out, f"samples_{step:06d}.png"))
            except Exception as e:  # sampling is a diagnostic only
                print(f"sampling failed: {e}", flush=True)
            if fd_eval is not None:
                r = fd_eval(ema)
                msg = (f"fid step {step}: FD {r['fid']:.2f} ({r['n']} samples, {args.fid_steps} PNDM steps), "
                       f"classes {r['classes_covered']}/10, entropy {r['entropy_bits']:.3f} bits")
                print(msg, flush=True)
                log.write(msg + "\n")
                log.flush()
            print(f"checkpoint at step {step}", flush=True)


if __name__ == "__main__":
    main()
