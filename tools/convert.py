#!/usr/bin/env python3
"""Convert a diffusers UNet2DModel checkpoint to pndm's single-file model format.

  python3 tools/convert.py MODEL_DIR -o model.safetensors
  python3 tools/convert.py PIPELINE_DIR --dtype f16 -o model-f16.safetensors
  python3 tools/convert.py ~/.cache/huggingface/hub/models--google--ddpm-cifar10-32 --check

INPUT may be
  - a UNet model folder: config.json + diffusion_pytorch_model.safetensors (or .bin, a sharded
    *.index.json, or a single variant such as diffusion_pytorch_model.fp16.safetensors);
  - a pipeline folder: model_index.json + unet/ + scheduler/;
  - a Hugging Face Hub cache snapshot (.../snapshots/<hash>) of either, or the repository's cache
    folder (models--org--name; the snapshot named by refs/main is used);
  - a weights file with config.json beside it, or an existing pndm file (re-written, e.g. to f16).
The scheduler config comes from scheduler/scheduler_config.json, else from a
scheduler_config.json beside the model (google/ddpm-* repositories keep one there), else it is
omitted (pndm then uses diffusers' PNDMScheduler defaults).

Weights are stored with diffusers' state-dict names; old attention names (query, key, value,
proj_attn) are renamed as diffusers does when loading. When diffusers is importable the names
and shapes are also checked against UNet2DModel(**config).

--check (needs torch + diffusers and a built pndm-unet): runs diffusers' UNet2DModel (weights as
stored in the output, i.e. rounded to f16 with --dtype f16) and pndm-unet on the same random
input and timesteps, prints the max abs difference and fails above 1e-4 * max(1, max|ref|).
Without torch, diffusers or pndm-unet the check is skipped with a message (exit status 0).

Exit status: 0 ok, 1 check failed, 2 usage / input error.
"""
import argparse
import glob
import json
import os
import re
import shlex
import struct
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pndm_format import FormatError, clean_config, diffusers_unet, read_safetensors, write_model_file  # noqa: E402

WEIGHT_NAME = "diffusion_pytorch_model"
F16_MAX = 65504.0
# pndm-unet command line; placeholders: {model} (the converted file), {x} (input .npy
# (B,C,H,W) float32), {t} (timesteps .npy (B,) float32), {out} (output .npy to write).
DEFAULT_UNET_ARGS = "--model {model} --sample {x} --timesteps {t} --output {out}"


class ConvertError(FormatError):
    pass


def note(msg):
    print(msg, file=sys.stderr)


# ----------------------------------------------------------------------------------------------
# Reading

def read_json(path, what):
    if not os.path.exists(path):
        hint = " (broken link: incomplete Hub download?)" if os.path.islink(path) else ""
        raise ConvertError(f"{path}: {what} not found{hint}")
    try:
        with open(path, "r", encoding="utf-8") as f:
            obj = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConvertError(f"{path}: invalid {what}: {e}") from e
    if not isinstance(obj, dict):
        raise ConvertError(f"{path}: invalid {what}: expected a JSON object")
    return obj


def read_bin(path):
    if not os.path.exists(path):
        raise ConvertError(f"{path}: not found")
    try:
        import torch
    except ImportError as e:
        raise ConvertError(f"{path}: reading PyTorch .bin checkpoints needs torch "
                           "(or convert a .safetensors copy)") from e
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except TypeError:  # torch < 1.13
        sd = torch.load(path, map_location="cpu")
    except Exception as e:
        raise ConvertError(f"{path}: cannot read as a PyTorch checkpoint: {e}") from e
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise ConvertError(f"{path}: not a state dict")
    out = {}
    for k, v in sd.items():
        if not isinstance(v, torch.Tensor):
            raise ConvertError(f"{path}: entry '{k}' is not a tensor")
        if not v.is_floating_point():
            raise ConvertError(f"{path}: tensor '{k}' has dtype {v.dtype}; expected floating point")
        out[k] = v.detach().to(torch.float32).numpy() if v.dtype == torch.bfloat16 else v.detach().numpy()
    return out


def read_weights(path):
    """A .safetensors, .bin or sharded *.index.json -> state dict of numpy arrays."""
    if path.endswith(".index.json"):
        idx = read_json(path, "shard index")
        wm = idx.get("weight_map")
        if not isinstance(wm, dict) or not wm:
            raise ConvertError(f"{path}: no weight_map")
        sd = {}
        for shard in sorted(set(wm.values())):
            part = read_weights(os.path.join(os.path.dirname(path), shard))
            dup = set(part) & set(sd)
            if dup:
                raise ConvertError(f"{path}: tensor '{sorted(dup)[0]}' appears in two shards")
            sd.update(part)
        return sd
    if path.endswith(".bin"):
        return read_bin(path)
    return read_safetensors(path)[0]


def find_weights(model_dir, variant):
    """Pick the weights file of a diffusers model folder."""
    names = [f"{WEIGHT_NAME}.{variant}.safetensors", f"{WEIGHT_NAME}.safetensors.index.{variant}.json",
             f"{WEIGHT_NAME}.{variant}.bin"] if variant else \
            [f"{WEIGHT_NAME}.safetensors", f"{WEIGHT_NAME}.safetensors.index.json",
             f"{WEIGHT_NAME}.bin", f"{WEIGHT_NAME}.bin.index.json"]
    for n in names:
        p = os.path.join(model_dir, n)
        if os.path.lexists(p):
            return p
    if not variant:
        cands = sorted(glob.glob(os.path.join(model_dir, f"{WEIGHT_NAME}.*.safetensors")) +
                       glob.glob(os.path.join(model_dir, f"{WEIGHT_NAME}.*.bin")))
        if len(cands) == 1:
            note(f"note: using the variant {os.path.basename(cands[0])}")
            return cands[0]
        if cands:
            raise ConvertError(f"{model_dir}: several weight variants "
                               f"({', '.join(os.path.basename(c) for c in cands)}): choose one with --variant")
    have = ", ".join(sorted(os.listdir(model_dir))) or "nothing"
    raise ConvertError(f"{model_dir}: no {names[0]} or {names[2]} (folder holds: {have})")


# ----------------------------------------------------------------------------------------------
# Locating the model

class Source:
    def __init__(self):
        self.weights = None       # weights file path
        self.config = None        # UNet config dict
        self.config_path = None
        self.scheduler = None     # scheduler config dict or None
        self.scheduler_path = None
        self.name = "model"       # for the default output name
        self.model_dir = None     # diffusers folder (for --check's from_pretrained), if any
        self.pndm_file = False


def hub_snapshot(repo_dir):
    """models--org--name cache folder -> its snapshot folder."""
    snaps = os.path.join(repo_dir, "snapshots")
    ref = os.path.join(repo_dir, "refs", "main")
    if os.path.isfile(ref):
        with open(ref) as f:
            h = f.read().strip()
        p = os.path.join(snaps, h)
        if os.path.isdir(p):
            return p
        raise ConvertError(f"{repo_dir}: refs/main names snapshot {h}, which is not in snapshots/")
    have = sorted(os.listdir(snaps)) if os.path.isdir(snaps) else []
    if len(have) == 1:
        return os.path.join(snaps, have[0])
    if not have:
        raise ConvertError(f"{repo_dir}: Hub cache folder without snapshots")
    raise ConvertError(f"{repo_dir}: several snapshots ({', '.join(have)}) and no refs/main: "
                       "pass one snapshots/<hash> folder")


def display_name(path):
    """A readable model name for a folder (Hub cache paths give the repository name)."""
    parts = os.path.abspath(path).rstrip(os.sep).split(os.sep)
    for i, p in enumerate(parts):
        if p.startswith("models--"):
            return p.split("--")[-1]
    last = parts[-1]
    if last in ("unet", "model") and len(parts) > 1:
        return parts[-2]
    return last or "model"


def locate(path, variant):
    src = Source()
    if not os.path.exists(path):
        raise ConvertError(f"{path}: no such file or folder")
    if os.path.isdir(path) and os.path.basename(os.path.abspath(path)).startswith("models--") \
            and os.path.isdir(os.path.join(path, "snapshots")):
        path = hub_snapshot(path)
    if os.path.isfile(path):
        base = os.path.basename(path)
        if base in ("model_index.json", "config.json"):
            path = os.path.dirname(os.path.abspath(path))
        elif base.endswith((".safetensors", ".bin", ".index.json")):
            if base.endswith(".safetensors"):
                meta = read_safetensors_meta(path)
                if meta.get("format") == "pndm":
                    src.pndm_file, src.weights = True, path
                    try:
                        src.config = json.loads(meta["pndm.unet_config"])
                        if "pndm.scheduler_config" in meta:
                            src.scheduler = json.loads(meta["pndm.scheduler_config"])
                    except (KeyError, json.JSONDecodeError) as e:
                        raise ConvertError(f"{path}: pndm file with a bad config in its metadata") from e
                    src.name = os.path.splitext(base)[0]
                    return src
            d = os.path.dirname(os.path.abspath(path))
            src.weights = path
            src.config_path = os.path.join(d, "config.json")
            src.config = read_json(src.config_path, "UNet config (config.json beside the weights)")
            find_scheduler(src, d)
            src.name = display_name(d)
            return src
        else:
            raise ConvertError(f"{path}: not a model folder, pipeline folder or weights file")
    d = path
    if os.path.isfile(os.path.join(d, "model_index.json")) and os.path.isdir(os.path.join(d, "unet")):
        idx = read_json(os.path.join(d, "model_index.json"), "pipeline index")
        unet = idx.get("unet")
        if isinstance(unet, list) and len(unet) == 2 and unet[1] != "UNet2DModel":
            raise ConvertError(f"{d}: the pipeline's unet is a {unet[1]}; only UNet2DModel is supported")
        if any(k in idx for k in ("vae", "vqvae", "text_encoder")):
            note(f"warning: {d}: a latent or text-conditioned pipeline ({idx.get('_class_name')}); "
                 "pndm samples its UNet in pixel space")
        unet_dir = os.path.join(d, "unet")
        sched = os.path.join(d, "scheduler", "scheduler_config.json")
        if os.path.lexists(sched):
            src.scheduler_path = sched
        src.name = display_name(d)
    elif os.path.isfile(os.path.join(d, "config.json")) or os.path.islink(os.path.join(d, "config.json")):
        unet_dir = d
        src.name = display_name(d)
        find_scheduler(src, d)
    else:
        have = ", ".join(sorted(os.listdir(d))) or "nothing"
        raise ConvertError(f"{d}: neither a model folder (config.json + {WEIGHT_NAME}.safetensors) nor "
                           f"a pipeline folder (model_index.json + unet/) (folder holds: {have})")
    src.model_dir = unet_dir
    src.config_path = os.path.join(unet_dir, "config.json")
    src.config = read_json(src.config_path, "UNet config")
    src.weights = find_weights(unet_dir, variant)
    if src.scheduler_path:
        src.scheduler = read_json(src.scheduler_path, "scheduler config")
    return src


def find_scheduler(src, model_dir):
    for p in (os.path.join(model_dir, "scheduler_config.json"),
              os.path.join(model_dir, "scheduler", "scheduler_config.json"),
              os.path.join(os.path.dirname(os.path.abspath(model_dir)), "scheduler", "scheduler_config.json")):
        if os.path.lexists(p):
            src.scheduler_path = p
            src.scheduler = read_json(p, "scheduler config")
            return


def read_safetensors_meta(path):
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise ConvertError(f"{path}: too short for a safetensors file")
            (hlen,) = struct.unpack("<Q", head)
            if hlen > os.path.getsize(path) - 8:
                raise ConvertError(f"{path}: header length {hlen} exceeds the file size")
            header = json.loads(f.read(hlen).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConvertError(f"{path}: invalid safetensors header: {e}") from e
    return (header.get("__metadata__") or {}) if isinstance(header, dict) else {}


# ----------------------------------------------------------------------------------------------
# Converting

_DEPRECATED_ATTN = re.compile(r"^(.*\.attentions\.\d+)\.(query|key|value|proj_attn)\.(weight|bias)$")
_ATTN_NEW = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}


def rename_deprecated(sd):
    """Old attention names -> current ones, as ModelMixin._convert_deprecated_attention_blocks."""
    out, n = {}, 0
    for k, v in sd.items():
        m = _DEPRECATED_ATTN.match(k)
        if m:
            k = f"{m.group(1)}.{_ATTN_NEW[m.group(2)]}.{m.group(3)}"
            n += 1
        if k in out:
            raise ConvertError(f"tensor '{k}' appears twice (old and new attention names)")
        out[k] = v
    return out, n


def check_config(cfg, where):
    cls = cfg.get("_class_name")
    if cls is not None and cls != "UNet2DModel":
        raise ConvertError(f"{where}: _class_name is {cls!r}; only UNet2DModel is supported")
    if "sample_size" in cfg and cfg["sample_size"] is not None and \
            not isinstance(cfg["sample_size"], (int, list, tuple)):
        raise ConvertError(f"{where}: sample_size {cfg['sample_size']!r} is not an int or a pair")


def check_tensors(sd, dtype, where):
    if not sd:
        raise ConvertError(f"{where}: no tensors")
    for k, v in sd.items():
        if not np.issubdtype(v.dtype, np.floating):
            raise ConvertError(f"{where}: tensor '{k}' has dtype {v.dtype}; expected floating point")
        if not np.all(np.isfinite(v)):
            raise ConvertError(f"{where}: tensor '{k}' contains NaN or Inf")
        if dtype == "f16" and v.size and float(np.abs(v).max()) > F16_MAX:
            raise ConvertError(f"{where}: tensor '{k}' has values beyond float16's range "
                               f"(max |x| = {float(np.abs(v).max()):.4g}); use --dtype f32")


def check_against_diffusers(sd, cfg, where):
    """Names and shapes must be exactly those of UNet2DModel(**config). Returns False if skipped."""
    try:
        import torch
        from diffusers import UNet2DModel
    except Exception:
        return False
    torch.set_num_threads(1)
    init = {k: v for k, v in cfg.items() if not k.startswith("_")}
    try:
        with torch.no_grad():
            ref = UNet2DModel.from_config(init).state_dict()
    except Exception as e:
        raise ConvertError(f"{where}: diffusers cannot build UNet2DModel from this config: {e}") from e
    missing = [k for k in ref if k not in sd]
    extra = [k for k in sd if k not in ref]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
        if extra:
            parts.append(f"{len(extra)} unexpected (e.g. {', '.join(extra[:3])})")
        raise ConvertError(f"{where}: weights do not match UNet2DModel(config): {'; '.join(parts)}")
    for k, v in ref.items():
        if tuple(v.shape) != tuple(sd[k].shape):
            raise ConvertError(f"{where}: tensor '{k}' has shape {list(sd[k].shape)}, "
                               f"UNet2DModel(config) expects {list(v.shape)}")
    return True


def default_output(src, dtype):
    return f"{src.name}{'-f16' if dtype == 'f16' else ''}.safetensors"


def convert(args):
    src = locate(args.input, args.variant)
    where = src.weights
    check_config(src.config, src.config_path or where)
    if src.pndm_file:
        sd, _ = read_safetensors(src.weights)
    else:
        sd = read_weights(src.weights)
    sd, renamed = rename_deprecated(sd)
    if renamed:
        note(f"renamed {renamed} old attention tensors (query/key/value/proj_attn -> to_q/to_k/to_v/to_out.0)")
    check_tensors(sd, args.dtype, where)
    if args.no_validate:
        validated = False
    else:
        validated = check_against_diffusers(sd, src.config, where)
    out = args.output or default_output(src, args.dtype)
    if os.path.isdir(out):
        out = os.path.join(out, default_output(src, args.dtype))
    if os.path.exists(out) and os.path.samefile(out, src.weights):
        raise ConvertError(f"{out}: the output would overwrite the input weights")
    unet_cfg = clean_config(src.config)
    sched_cfg = clean_config(src.scheduler) if src.scheduler is not None else None
    try:
        write_model_file(out, sd, unet_cfg, sched_cfg, dtype=args.dtype)
    except OSError as e:
        raise ConvertError(f"{out}: cannot write: {e}") from e
    nparam = sum(int(v.size) for v in sd.values())
    note(f"{where}: {len(sd)} tensors, {nparam} parameters -> {out} ({args.dtype}, "
         f"{os.path.getsize(out)} bytes); scheduler config: "
         f"{src.scheduler_path or ('from the pndm file' if src.scheduler is not None else 'none (defaults)')}; "
         f"names/shapes {'checked against diffusers' if validated else 'not checked (no diffusers)'}")
    print(out)
    return src, out


# ----------------------------------------------------------------------------------------------
# --check

def find_exe(path):
    if os.path.isfile(path) and os.access(path, os.X_OK):
        return path
    here = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), path)
    if not os.path.isabs(path) and os.path.isfile(here) and os.access(here, os.X_OK):
        return here
    return None


def check(args, out_path):
    """Returns 0 (ok or skipped) or 1 (failed)."""
    try:
        import torch
        import diffusers  # noqa: F401  (availability; diffusers_unet uses it)
    except Exception as e:
        note(f"check skipped: torch and diffusers are needed ({e})")
        return 0
    exe = find_exe(args.pndm_unet)
    if exe is None:
        note(f"check skipped: no pndm-unet executable at {args.pndm_unet} (build it, or --pndm-unet PATH)")
        return 0
    torch.set_num_threads(args.threads)
    model, _ = diffusers_unet(out_path)
    ss = model.config.sample_size
    h, w = (ss, ss) if isinstance(ss, int) else tuple(ss)
    cin = model.config.in_channels
    g = torch.Generator().manual_seed(args.seed)
    x = torch.randn((2, cin, h, w), generator=g)
    if model.config.time_embedding_type == "fourier":
        t = (torch.rand((2,), generator=g) * 10 + 0.01).float()   # sigmas
    else:
        n_train = model.config.num_train_timesteps or 1000
        t = torch.randint(0, n_train, (2,), generator=g)
    with torch.no_grad():
        ref = model(x, t).sample.numpy().astype(np.float64)
    with tempfile.TemporaryDirectory(prefix="pndm-check-") as tmp:
        xp, tp, op = (os.path.join(tmp, n) for n in ("x.npy", "t.npy", "out.npy"))
        np.save(xp, x.numpy().astype(np.float32))
        np.save(tp, t.numpy().astype(np.float32))
        cmd = [exe] + [a.format(model=out_path, x=xp, t=tp, out=op) for a in shlex.split(args.pndm_unet_args)]
        note("check: " + " ".join(shlex.quote(c) for c in cmd))
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if r.returncode != 0:
            note(f"check FAILED: pndm-unet exited with status {r.returncode}:\n{r.stderr.strip()}")
            return 1
        if not os.path.exists(op):
            note(f"check FAILED: pndm-unet wrote no {op}")
            return 1
        got = np.load(op).astype(np.float64)
    if got.shape != ref.shape:
        note(f"check FAILED: pndm-unet output shape {got.shape}, diffusers {ref.shape}")
        return 1
    err = float(np.abs(got - ref).max())
    absmax = float(np.abs(ref).max())
    tol = 1e-4 * max(1.0, absmax)
    ok = np.isfinite(err) and err <= tol
    print(f"check: t={t.tolist()} input {tuple(x.shape)}: max|pndm-unet - diffusers| = {err:.3e} "
          f"(max|ref| {absmax:.4g}, tolerance {tol:.3e}) {'OK' if ok else 'FAILED'}")
    return 0 if ok else 1


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("input", help="model folder, pipeline folder, Hub cache snapshot, or weights file")
    ap.add_argument("-o", "--output", help="output file (default: <model name>[-f16].safetensors here)")
    ap.add_argument("--dtype", choices=["f32", "f16"], default="f32", help="stored dtype (%(default)s)")
    ap.add_argument("--variant", help="weights variant, e.g. fp16 (diffusion_pytorch_model.fp16.safetensors)")
    ap.add_argument("--no-validate", action="store_true",
                    help="skip the name/shape check against diffusers' UNet2DModel")
    ap.add_argument("--check", action="store_true",
                    help="compare pndm-unet with diffusers on a random input after converting")
    ap.add_argument("--pndm-unet", default="build/pndm-unet", help="pndm-unet executable (%(default)s)")
    ap.add_argument("--pndm-unet-args", default=DEFAULT_UNET_ARGS,
                    help="pndm-unet arguments, with {model} {x} {t} {out} (%(default)s)")
    ap.add_argument("--seed", type=int, default=0, help="--check input seed (%(default)s)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for --check (%(default)s)")
    args = ap.parse_args(argv)
    try:
        _, out = convert(args)
    except FormatError as e:  # ConvertError, and read_safetensors' errors
        print(f"convert.py: error: {e}", file=sys.stderr)
        return 2
    if args.check:
        return check(args, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
