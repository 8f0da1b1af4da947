"""Writes the seed corpus of each fuzz target into tests/fuzz/corpus/<target>/ (seed_* files).
Run once (/usr/bin/python3 tests/fuzz/make_seeds.py, needs numpy, Pillow, torch + diffusers for
the small models); the tests only read the committed files. Inputs found by fuzzing are added
beside the seeds by run_fuzz.sh (crash-*, slow-* and the minimised corpus)."""
import glob
import io
import json
import os
import shutil
import struct
import sys
import zlib

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
DATA = os.path.join(ROOT, "tests", "data")
sys.path.insert(0, os.path.join(ROOT, "tools"))


def out(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed_" + name), "wb") as f:
        f.write(data)


def st_file(header, data=b"", pad=True):
    hb = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        hb += b" " * ((8 - len(hb) % 8) % 8)
    return struct.pack("<Q", len(hb)) + hb + data


def tiny_models():
    """Small pndm files of several architectures (weights random, seeded)."""
    import torch
    from diffusers import UNet2DModel
    from pndm_format import clean_config, write_model_file
    sched = {"_class_name": "PNDMScheduler", "num_train_timesteps": 1000, "beta_schedule": "linear",
             "skip_prk_steps": True}
    variants = {
        "attn2": dict(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(4, 8),
                      down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                      up_block_types=("AttnUpBlock2D", "UpBlock2D"), layers_per_block=1, norm_num_groups=2,
                      attention_head_dim=4),
        "scale_shift": dict(sample_size=8, in_channels=2, out_channels=2, block_out_channels=(4, 4),
                            down_block_types=("ResnetDownsampleBlock2D", "AttnDownBlock2D"),
                            up_block_types=("AttnUpBlock2D", "ResnetUpsampleBlock2D"), layers_per_block=1,
                            norm_num_groups=2, resnet_time_scale_shift="scale_shift", downsample_type="resnet",
                            upsample_type="resnet", attention_head_dim=None, add_attention=False),
        "fourier_skip": dict(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(8, 8),
                             down_block_types=("SkipDownBlock2D", "SkipDownBlock2D"),
                             up_block_types=("SkipUpBlock2D", "SkipUpBlock2D"), layers_per_block=1,
                             norm_num_groups=2, time_embedding_type="fourier", add_attention=False),
    }
    tmp = os.path.join(HERE, "tmp_model.safetensors")
    for name, cfg in variants.items():
        torch.manual_seed(0)
        unet = UNet2DModel(**cfg)
        sd = {k: v.detach().numpy() for k, v in unet.state_dict().items()}
        for dt in ("f32", "f16"):
            if name != "attn2" and dt == "f16":
                continue
            write_model_file(tmp, sd, clean_config(unet.config), sched, dtype=dt)
            with open(tmp, "rb") as f:
                b = f.read()
            out("model", f"{name}_{dt}.safetensors", b)
            out("unet_config", f"{name}.json", json.dumps(clean_config(unet.config)).encode())
    os.remove(tmp)


def main():
    tiny = open(os.path.join(DATA, "hostile", "tiny.safetensors"), "rb").read()
    # --- safetensors
    out("safetensors", "tiny.safetensors", tiny)
    out("safetensors", "empty_header", st_file({}))
    out("safetensors", "meta_only", st_file({"__metadata__": {"format": "pndm", "k": "v"}}))
    f32 = np.arange(6, dtype=np.float32).tobytes()
    f16 = np.array([1, -2, 65504, 6e-8, np.inf, np.nan], dtype=np.float16).tobytes()
    out("safetensors", "three_dtypes", st_file({
        "a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
        "b": {"dtype": "F16", "shape": [6], "data_offsets": [24, 36]},
        "c": {"dtype": "BF16", "shape": [3], "data_offsets": [36, 42]},
        "z": {"dtype": "F32", "shape": [0, 4], "data_offsets": [42, 42]},
        "s": {"dtype": "F32", "shape": [], "data_offsets": [42, 46]}}, f32 + f16 + b"\x80\x3f\x00\xc0\x80\x7f" + f32[:4]))
    out("safetensors", "unaligned", st_file({"x": {"dtype": "F32", "shape": [1], "data_offsets": [1, 5]}}, b"\0" + f32[:4], pad=False))
    out("safetensors", "overlap", st_file({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                           "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, f32[:8]))
    out("safetensors", "i64", st_file({"a": {"dtype": "I64", "shape": [1], "data_offsets": [0, 8]}}, f32[:8]))
    # --- model
    out("model", "tiny.safetensors", tiny)
    # --- unet_config
    for p in sorted(glob.glob(os.path.join(DATA, "unet", "*", "model", "config.json")) +
                    glob.glob(os.path.join(DATA, "unet", "extra", "*", "model", "config.json"))):
        out("unet_config", p.split(os.sep)[-3] + ".json", open(p, "rb").read())
    out("unet_config", "minimal.json", b'{"sample_size": 8}')
    out("unet_config", "legacy_names.json", json.dumps({
        "sample_size": [8, 8], "block_out_channels": [4], "down_block_types": ["UNetResDownBlock2D"],
        "up_block_types": ["UNetResUpBlock2D"], "norm_num_groups": 2, "act_fn": "swish",
        "attention_head_dim": None, "attn_norm_num_groups": 1}).encode())
    # --- scheduler_config
    for p in sorted(glob.glob(os.path.join(DATA, "scheduler", "*", "scheduler_config.json"))):
        b = open(p, "rb").read()
        if len(b) < 20000:
            out("scheduler_config", p.split(os.sep)[-2] + ".json", b)
    out("scheduler_config", "empty_object.json", b"{}")
    out("scheduler_config", "trained_betas_T4.json", b'{"num_train_timesteps": 4, "trained_betas": [0.1, 0.2, 0.3, 0.4], "skip_prk_steps": true}')
    out("scheduler_config", "ddpm.json", json.dumps({
        "_class_name": "DDPMScheduler", "_diffusers_version": "0.30.3", "beta_end": 0.012,
        "beta_schedule": "scaled_linear", "beta_start": 0.00085, "clip_sample": False,
        "num_train_timesteps": 1000, "prediction_type": "v_prediction", "set_alpha_to_one": True,
        "steps_offset": 1, "timestep_spacing": "trailing", "variance_type": "fixed_small"}).encode())
    # --- model_index (bytes after a NUL: scheduler/scheduler_config.json)
    idx = {"_class_name": "DDPMPipeline", "_diffusers_version": "0.30.3",
           "scheduler": ["diffusers", "PNDMScheduler"], "unet": ["diffusers", "UNet2DModel"]}
    out("model_index", "plain.json", json.dumps(idx, indent=2).encode())
    out("model_index", "with_scheduler.json", json.dumps(idx).encode() + b"\0" +
        open(os.path.join(DATA, "scheduler", "skip_prk", "scheduler_config.json"), "rb").read())
    out("model_index", "unet_2d_condition.json", json.dumps(dict(idx, unet=["diffusers", "UNet2DConditionModel"])).encode())
    # --- npy
    for p in ["unet/c_gray/t_batch.npy", "unet/e_fourier_skip/t_batch.npy", "scheduler/default/final_alpha_cumprod.npy"]:
        out("npy", p.replace("/", "_"), open(os.path.join(DATA, p), "rb").read())
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4) - 5

    def npy(arr, version=None):
        bio = io.BytesIO()
        if version:
            np.lib.format.write_array(bio, arr, version=version)
        else:
            np.save(bio, arr)
        return bio.getvalue()
    out("npy", "f32_3d.npy", npy(a))
    out("npy", "f64_fortran.npy", npy(np.asfortranarray(a.astype(np.float64))))
    out("npy", "i64_be.npy", npy(a.astype(">i8")))
    out("npy", "i32_v2.npy", npy(a.astype(np.int32), (2, 0)))
    out("npy", "u8_v3.npy", npy(a.astype(np.uint8), (3, 0)))
    out("npy", "u32_scalar.npy", npy(np.array(7, dtype=np.uint32)))
    out("npy", "bool_empty.npy", npy(np.zeros((0, 3), dtype=bool)))
    out("npy", "f32_4d_fortran_be.npy", npy(np.asfortranarray(a.reshape(1, 2, 3, 4).astype(">f4"))))
    # --- png
    from PIL import Image, PngImagePlugin
    std = open(os.path.join(DATA, "png", "standin_default_s20_b2_image_0.png"), "rb").read()
    rng = np.random.default_rng(0)

    def png(img, **kw):
        bio = io.BytesIO()
        img.save(bio, format="PNG", **kw)
        return bio.getvalue()
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "model=x; seed=1; steps=4")
    info.add_text("Software", "pndm-gen")
    info.add_itxt("utf8", "gr\u00fc\u00df \u2603", lang="de", tkey="gruss")
    info.add_text("latin1", "caf\u00e9", zip=True)
    gray = Image.fromarray(rng.integers(0, 256, (5, 7), dtype=np.uint8), "L")
    rgb = Image.fromarray(rng.integers(0, 256, (4, 3, 3), dtype=np.uint8), "RGB")
    seeds = {
        "standin.png": std,
        "gray_text.png": png(gray, pnginfo=info),
        "rgb.png": png(rgb),
        "rgba.png": png(rgb.convert("RGBA")),
        "palette.png": png(rgb.convert("P")),
        "gray1bit.png": png(gray.convert("1")),
        "gray16.png": png(Image.fromarray((np.arange(12, dtype=np.uint16) * 5000).reshape(3, 4)).convert("I;16")),
        "la.png": png(gray.convert("LA")),
    }
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
    # 1x1 interlaced gray: only pass 1 holds the pixel
    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 1)
    seeds["interlaced_1x1.png"] = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00\x80")) + \
        chunk(b"tEXt", b"k\x00v") + chunk(b"IEND", b"")
    for name, b in seeds.items():
        if b is not None:
            out("png_text", name, b)
            out("png_decode", name, b)
    tiny_models()


if __name__ == "__main__":
    main()
