#!/usr/bin/env python3
"""Random-weight benchmark models with the exact architectures of google/ddpm-cifar10-32 and
google/ddpm-celebahq-256, and their direct-convolution FLOP counts.

For each model NAME it writes, under --out (default build-bench/models):
  NAME/config.json, NAME/diffusion_pytorch_model.safetensors   diffusers model folder
  NAME/scheduler_config.json                                    the google repo's DDPMScheduler config
  NAME.safetensors                                              pndm single file (tools/pndm_format.py)
  NAME.onnx                                                     UNet for ONNX Runtime (dynamic batch)
  NAME.json                                                     parameters, FLOPs per forward, paths

Weights: torch.manual_seed(--seed) then UNet2DModel's own initialisation, so every run writes
the same files. Timing does not depend on the weights' values.

FLOPs ("direct-convolution FLOPs") count 2 x multiply-accumulates of every Conv2d, Linear and
attention matmul (Q K^T and softmax(.) V) for one image and one UNet forward, as a naive direct
convolution would do them; norms, activations, softmax, upsampling and additions are not
counted. They are measured with forward hooks on a real batch-1 forward.

Usage: python3 bench/make_models.py [--models cifar10,celebahq256] [--out DIR] [--no-onnx] [--force]
"""
import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tools"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import safetensors.torch  # noqa: E402,F401  (diffusers 0.30 save_pretrained needs it imported)

import pndm_format  # noqa: E402

# UNet2DModel configs exactly as in the Hub repositories' config.json (diffusers key names).
COMMON = {
    "_class_name": "UNet2DModel",
    "act_fn": "silu",
    "attention_head_dim": None,
    "center_input_sample": False,
    "downsample_padding": 0,
    "flip_sin_to_cos": False,
    "freq_shift": 1,
    "in_channels": 3,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-06,
    "norm_num_groups": 32,
    "out_channels": 3,
    "time_embedding_type": "positional",
}
MODELS = {
    "cifar10": {
        "hub": "google/ddpm-cifar10-32",
        "expect_params_m": 35.7,
        "expect_gflop": 12.44,
        "config": dict(COMMON, **{
            "block_out_channels": [128, 256, 256, 256],
            "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
            "up_block_types": ["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
            "sample_size": 32,
        }),
    },
    "celebahq256": {
        "hub": "google/ddpm-celebahq-256",
        "expect_params_m": 113.7,
        "expect_gflop": 497.0,
        "config": dict(COMMON, **{
            "block_out_channels": [128, 128, 256, 256, 512, 512],
            "down_block_types": ["DownBlock2D", "DownBlock2D", "DownBlock2D", "DownBlock2D",
                                 "AttnDownBlock2D", "DownBlock2D"],
            "up_block_types": ["UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D",
                               "UpBlock2D", "UpBlock2D"],
            "sample_size": 256,
        }),
    },
}
# scheduler_config.json of the google/ddpm-* repositories (PNDMPipeline reads it as a PNDMScheduler
# config: the DDPM-only keys clip_sample and variance_type are ignored).
SCHEDULER_CONFIG = {
    "_class_name": "DDPMScheduler",
    "_diffusers_version": "0.1.1",
    "beta_end": 0.02,
    "beta_schedule": "linear",
    "beta_start": 0.0001,
    "clip_sample": True,
    "num_train_timesteps": 1000,
    "trained_betas": None,
    "variance_type": "fixed_small",
}


def count_flops(unet, sample_size, in_channels):
    """Direct-convolution FLOPs of one batch-1 forward: {'total', 'conv', 'linear', 'attention'}."""
    from diffusers.models.attention_processor import Attention

    acc = {"conv": 0, "linear": 0, "attention": 0}

    def conv_hook(mod, inp, out):
        k = mod.weight.shape[1] * mod.weight.shape[2] * mod.weight.shape[3]  # Cin/groups * kh * kw
        acc["conv"] += 2 * out.numel() * k

    def linear_hook(mod, inp, out):
        acc["linear"] += 2 * out.numel() * mod.in_features

    def attn_hook(mod, inp, out):
        x = inp[0] if inp else None
        if x is None or x.dim() != 4:
            raise RuntimeError("attention hook: expected a (B, C, H, W) input")
        b, c, h, w = x.shape
        L = h * w
        acc["attention"] += b * 2 * (2 * L * L * c)  # Q K^T and P V, summed over heads

    hooks = []
    for m in unet.modules():
        if isinstance(m, torch.nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, torch.nn.Linear):
            hooks.append(m.register_forward_hook(linear_hook))
        elif isinstance(m, Attention):
            hooks.append(m.register_forward_hook(attn_hook))
    with torch.no_grad():
        unet(torch.zeros(1, in_channels, sample_size, sample_size), torch.tensor(500)).sample
    for h in hooks:
        h.remove()
    acc["total"] = acc["conv"] + acc["linear"] + acc["attention"]
    return acc


class _OnnxWrap(torch.nn.Module):
    def __init__(self, unet):
        super().__init__()
        self.unet = unet

    def forward(self, sample, timestep):
        return self.unet(sample, timestep).sample


def export_onnx(unet, path, cfg):
    import warnings
    warnings.filterwarnings("ignore")  # tracer warnings about Python asserts and shape branches
    s, c = cfg["sample_size"], cfg["in_channels"]
    wrap = _OnnxWrap(unet).eval()
    tmp = path + ".tmp"
    with torch.no_grad():
        torch.onnx.export(wrap, (torch.zeros(2, c, s, s), torch.full((2,), 500, dtype=torch.int64)), tmp,
                          input_names=["sample", "timestep"], output_names=["out"],
                          dynamic_axes={"sample": {0: "batch"}, "timestep": {0: "batch"}, "out": {0: "batch"}},
                          opset_version=17, do_constant_folding=True)
    os.replace(tmp, path)


def check_onnx(unet, path, cfg):
    """max |onnxruntime - torch| on a random batch (2 images; 1 above 64x64 to save time)."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    s, c = cfg["sample_size"], cfg["in_channels"]
    g = torch.Generator().manual_seed(1)
    b = 2 if s <= 64 else 1
    x = torch.randn(b, c, s, s, generator=g)
    t = torch.tensor([981, 3][:b], dtype=torch.int64)
    with torch.no_grad():
        ref = unet(x, t).sample.numpy()
    got = sess.run(["out"], {"sample": x.numpy(), "timestep": t.numpy()})[0]
    return float(np.abs(got - ref).max()), float(np.abs(ref).max())


def add_onnx(unet, onnx_path, cfg, info):
    t0 = time.time()
    export_onnx(unet, onnx_path, cfg)
    info["onnx_file"] = os.path.abspath(onnx_path)
    try:
        err, ref = check_onnx(unet, onnx_path, cfg)
        info["onnx_max_abs_err"] = err
        print(f"  ONNX export {onnx_path}: max |ort - torch| = {err:.3g} (max |torch| = {ref:.3g}), {time.time() - t0:.1f} s")
    except ImportError:
        print(f"  ONNX export {onnx_path} written; onnxruntime not installed, not checked")


def make(name, out_dir, seed, onnx, force):
    from diffusers import UNet2DModel

    spec = MODELS[name]
    cfg = spec["config"]
    folder = os.path.join(out_dir, name)
    single = os.path.join(out_dir, name + ".safetensors")
    onnx_path = os.path.join(out_dir, name + ".onnx")
    info_path = os.path.join(out_dir, name + ".json")
    if not force and os.path.exists(info_path) and os.path.exists(single):
        with open(info_path) as f:
            info = json.load(f)
        print(f"{name}: exists ({info['params'] / 1e6:.2f} M params, {info['flops']['total'] / 1e9:.3f} GFLOP/forward)"
              f" — use --force to rebuild")
        if onnx and not os.path.exists(onnx_path):  # made earlier with --no-onnx: add the export
            unet = UNet2DModel.from_pretrained(folder).eval()
            add_onnx(unet, onnx_path, cfg, info)
            with open(info_path, "w") as f:
                json.dump(info, f, indent=2)
        return info

    t0 = time.time()
    torch.manual_seed(seed)
    unet = UNet2DModel(**{k: v for k, v in cfg.items() if not k.startswith("_")}).eval()
    params = sum(p.numel() for p in unet.parameters())
    os.makedirs(folder, exist_ok=True)
    unet.save_pretrained(folder, safe_serialization=True)
    with open(os.path.join(folder, "scheduler_config.json"), "w") as f:
        json.dump(SCHEDULER_CONFIG, f, indent=2, sort_keys=True)
    with open(os.path.join(folder, "config.json")) as f:
        saved_cfg = json.load(f)
    sd = {k: v.detach().numpy() for k, v in unet.state_dict().items()}
    pndm_format.write_model_file(single, sd, pndm_format.clean_config(saved_cfg),
                                 pndm_format.clean_config(SCHEDULER_CONFIG))

    flops = count_flops(unet, cfg["sample_size"], cfg["in_channels"])
    info = {
        "name": name,
        "architecture_of": spec["hub"],
        "seed": seed,
        "params": params,
        "sample_size": cfg["sample_size"],
        "in_channels": cfg["in_channels"],
        "flops": flops,
        "diffusers_folder": os.path.abspath(folder),
        "pndm_file": os.path.abspath(single),
        "onnx_file": None,
    }
    print(f"{name} (architecture of {spec['hub']}): {params} parameters = {params / 1e6:.2f} M "
          f"(expected ~{spec['expect_params_m']} M)")
    print(f"  direct-convolution FLOPs per image per forward: {flops['total'] / 1e9:.3f} GFLOP "
          f"(conv {flops['conv'] / 1e9:.3f}, linear {flops['linear'] / 1e9:.4f}, attention {flops['attention'] / 1e9:.3f}; "
          f"expected ~{spec['expect_gflop']})")
    if abs(params / 1e6 - spec["expect_params_m"]) > 0.1:
        raise SystemExit(f"{name}: {params / 1e6:.2f} M parameters, expected {spec['expect_params_m']} M: config mismatch")

    if onnx:
        add_onnx(unet, onnx_path, cfg, info)
    with open(info_path, "w") as f:
        json.dump(info, f, indent=2)
    print(f"  wrote {folder}/, {single}, {info_path} in {time.time() - t0:.1f} s")
    return info


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="cifar10,celebahq256", help="comma-separated: " + ", ".join(MODELS))
    ap.add_argument("--out", default=os.path.join(ROOT, "build-bench", "models"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-onnx", action="store_true", help="skip the ONNX export")
    ap.add_argument("--force", action="store_true", help="rebuild even if the files exist")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for the FLOP-count forward")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    os.makedirs(a.out, exist_ok=True)
    for name in a.models.split(","):
        if name not in MODELS:
            raise SystemExit(f"unknown model '{name}': choose from {', '.join(MODELS)}")
        make(name, a.out, a.seed, not a.no_onnx, a.force)


if __name__ == "__main__":
    main()
