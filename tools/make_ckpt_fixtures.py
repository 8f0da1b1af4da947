#!/usr/bin/env python3
"""Checkpoint-format fixtures for pndm's tests (tests/data/ckpt), with diffusers' outputs.

Run by hand with the reference environment (Debian torch 1.13 + diffusers 0.30.3), never by CI:
    /work/venv-ref/bin/python tools/make_ckpt_fixtures.py [--out tests/data/ckpt]

One tiny UNet2DModel (8x8, 3 channels, block_out_channels (4, 8), an AttnDownBlock2D, an
AttnUpBlock2D and the attention mid block: 11,767 parameters), UNet2DModel's own random init
(torch.manual_seed(1234)) plus N(0, 0.05^2) on every parameter so no norm is trivial, saved in
every layout and format pndm reads:

  hub/models--pndm-test--tiny-ddpm/     a Hugging Face cache tree: refs/main, refs/v2,
      snapshots/<A>/   the google/ddpm-* layout: model_index.json (DDPMPipeline) at the root
                       beside config.json, scheduler_config.json and the weights as
                       diffusion_pytorch_model.safetensors AND .bin (zip), both with the old
                       attention names (query/key/value/proj_attn)
      snapshots/<B>/   unet/ + scheduler/ pipeline layout, weights only as the fp16 variant
                       (unet/diffusion_pytorch_model.fp16.safetensors)
      every file a relative symlink into blobs/, as huggingface_hub writes them
  model_bin_zip/       model folder, diffusion_pytorch_model.bin (torch.save zip, old names)
  model_bin_legacy/    model folder, .bin in the pre-1.6 format (_use_new_zipfile_serialization=False)
  model_bin_bf16/      model folder, .bin zip with bfloat16 tensors
  model_bin_views/     model folder, .bin zip whose tensors are views: q/k/v/out of each attention
                       block slices of one shared storage, every 4-D conv weight a transposed
                       (non-contiguous) view
  model_bin_zip64/     model folder, the .bin zip rewritten with zip64 end records and extra fields
  model_sharded_st/    diffusion_pytorch_model.safetensors.index.json + 2 safetensors shards
  model_sharded_bin/   diffusion_pytorch_model.bin.index.json + 2 .bin shards
  pipe_variant/        unet/ (diffusion_pytorch_model.safetensors f32 and .fp16.safetensors) +
                       scheduler/
  hostile/             the hostile-pickle matrix (make_hostile() below), with config.json
  small/               small_zip.bin, small_legacy.bin: five tensors (f32, f16, bf16, two views of one
                       storage, a transposed view) for the unit tests and as fuzz seeds

cases.txt lists every pndm-gen run the test makes (tests/cli_checkpoints.sh):
    NAME|ENV|MODEL|FLAGS|HOW_DIFFUSERS_LOADED_IT
with ref/NAME/{final_latents,images}.npy: diffusers' PNDMPipeline loop (PNDMScheduler, 10 steps
with PRK warm-up, batch 2, torch.manual_seed(SEED), output_type="np") on the UNet as diffusers
loads that layout; each run is also checked against PNDMPipeline.__call__ itself.
"""
import argparse
import collections
import hashlib
import io
import json
import os
import shutil
import struct
import sys
import zipfile

import numpy as np
import torch
import safetensors.torch  # noqa: F401  (diffusers 0.30 needs it imported before loading safetensors)
from safetensors.torch import save_file

from diffusers import PNDMPipeline, PNDMScheduler, UNet2DModel
from diffusers.models.model_loading_utils import load_state_dict

CONFIG = dict(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(4, 8), norm_num_groups=2,
              layers_per_block=1, attention_head_dim=4, down_block_types=("DownBlock2D", "AttnDownBlock2D"),
              up_block_types=("AttnUpBlock2D", "UpBlock2D"))
STEPS, BATCH = 10, 2
REPO = "pndm-test/tiny-ddpm"
OLD = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}


def make_model():
    torch.manual_seed(1234)
    m = UNet2DModel(**CONFIG)
    g = torch.Generator().manual_seed(99)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return m.eval()


def old_names(sd):
    """The state dict under the attention names of diffusers 0.0.x-0.1 (the google/ddpm-* files)."""
    out = collections.OrderedDict()
    for k, v in sd.items():
        for new, old in OLD.items():
            tag = f".{new}."
            if ".attentions." in k and tag in k:
                k = k.replace(tag, f".{old}.")
                break
        out[k] = v
    return out


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")


def model_folder(d, model):
    """config.json (UNet2DModel.save_config) and scheduler_config.json (PNDMScheduler defaults)."""
    os.makedirs(d, exist_ok=True)
    model.save_config(d)
    PNDMScheduler().save_config(d)
    return d


def torch_save(sd, path, legacy=False):
    torch.save(sd, path, _use_new_zipfile_serialization=not legacy)


def shards(sd, n=2):
    keys = list(sd.keys())
    cut = len(keys) // n
    return [collections.OrderedDict((k, sd[k]) for k in keys[:cut]),
            collections.OrderedDict((k, sd[k]) for k in keys[cut:])]


def views_state_dict(sd):
    """The same values, stored as views: q/k/v/out of each attention block slices of one storage,
    4-D conv weights transposed copies viewed back (non-contiguous)."""
    out = collections.OrderedDict()
    done = set()
    for k, v in sd.items():
        if k in done:
            continue
        if ".attentions." in k and (".to_q." in k):
            base = k.split(".to_q.")[0]
            suffix = k.split(".to_q.")[1]
            parts = [f"{base}.{n}.{suffix}" for n in ("to_q", "to_k", "to_v", "to_out.0")]
            flat = torch.cat([sd[p].reshape(-1) for p in parts])
            off = 0
            for p in parts:
                n = sd[p].numel()
                out[p] = flat[off:off + n].view(sd[p].shape)
                off += n
                done.add(p)
            continue
        if v.dim() == 4:
            out[k] = v.permute(3, 2, 1, 0).contiguous().permute(3, 2, 1, 0)
            assert not out[k].is_contiguous() or min(v.shape[2:]) == 1
        else:
            out[k] = v
    assert torch.equal(torch.cat([out[k].reshape(-1) for k in sd]), torch.cat([sd[k].reshape(-1) for k in sd]))
    return collections.OrderedDict((k, out[k]) for k in sd)


def zip64_rewrite(src, dst):
    """A torch zip with every entry's sizes/offset moved into zip64 extra fields and zip64 end
    records (as a >4 GiB checkpoint has them); data bytes and their offsets unchanged."""
    data = open(src, "rb").read()
    eocd = data.rfind(b"PK\x05\x06")
    n, cd_size, cd_off = struct.unpack("<HII", data[eocd + 10:eocd + 20])
    out = bytearray(data[:cd_off])
    cd = bytearray()
    p = cd_off
    for _ in range(n):
        h = data[p:p + 46]
        nlen, xlen, clen = struct.unpack("<HHH", h[28:34])
        csize, usize = struct.unpack("<II", h[20:28])
        lho = struct.unpack("<I", h[42:46])[0]
        name = data[p + 46:p + 46 + nlen]
        extra = struct.pack("<HHQQQ", 1, 24, usize, csize, lho)
        nh = bytearray(h)
        nh[20:28] = struct.pack("<II", 0xFFFFFFFF, 0xFFFFFFFF)
        nh[30:32] = struct.pack("<H", len(extra))
        nh[32:34] = struct.pack("<H", 0)
        nh[42:46] = struct.pack("<I", 0xFFFFFFFF)
        cd += nh + name + extra
        p += 46 + nlen + xlen + clen
    new_cd_off = len(out)
    out += cd
    z64 = len(out)
    out += struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, n, n, len(cd), new_cd_off)
    out += struct.pack("<IIQI", 0x07064B50, 0, z64, 1)
    out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    open(dst, "wb").write(bytes(out))
    torch.load(dst, weights_only=True)  # torch reads it too


# ---- the Hub cache ---------------------------------------------------------------------------
def fake_commit(label):
    return hashlib.sha1(label.encode()).hexdigest()


def hub_put(repo, commit, rel, src):
    """snapshots/<commit>/<rel> -> ../../blobs/<sha256> (relative, as huggingface_hub links)."""
    blob = hashlib.sha256(open(src, "rb").read()).hexdigest()
    os.makedirs(os.path.join(repo, "blobs"), exist_ok=True)
    bp = os.path.join(repo, "blobs", blob)
    if not os.path.exists(bp):
        shutil.copyfile(src, bp)
    link = os.path.join(repo, "snapshots", commit, rel)
    os.makedirs(os.path.dirname(link), exist_ok=True)
    depth = rel.count("/") + 2
    os.symlink("/".join([".."] * depth) + "/blobs/" + blob, link)


def make_hub(root, model, tmp):
    repo = os.path.join(root, "hub", "models--" + REPO.replace("/", "--"))
    a, b = fake_commit("tiny-ddpm main"), fake_commit("tiny-ddpm v2")
    os.makedirs(os.path.join(repo, "refs"))
    open(os.path.join(repo, "refs", "main"), "w").write(a)  # no newline, as huggingface_hub writes it
    open(os.path.join(repo, "refs", "v2"), "w").write(b)
    sd = model.state_dict()
    # A: google/ddpm-* root layout, old names, safetensors and bin
    sa = model_folder(os.path.join(tmp, "A"), model)
    write_json(os.path.join(sa, "model_index.json"), {
        "_class_name": "DDPMPipeline", "_diffusers_version": "0.30.3",
        "scheduler": ["diffusers", "PNDMScheduler"], "unet": ["diffusers", "UNet2DModel"]})
    old = old_names(sd)
    save_file({k: v.contiguous() for k, v in old.items()}, os.path.join(sa, "diffusion_pytorch_model.safetensors"))
    torch_save(old, os.path.join(sa, "diffusion_pytorch_model.bin"))
    for f in sorted(os.listdir(sa)):
        hub_put(repo, a, f, os.path.join(sa, f))
    # B: unet/ + scheduler/, fp16 variant only
    sb = os.path.join(tmp, "B")
    model_folder(os.path.join(sb, "unet"), model)
    os.makedirs(os.path.join(sb, "scheduler"))
    os.rename(os.path.join(sb, "unet", "scheduler_config.json"), os.path.join(sb, "scheduler", "scheduler_config.json"))
    save_file({k: v.half().contiguous() for k, v in sd.items()},
              os.path.join(sb, "unet", "diffusion_pytorch_model.fp16.safetensors"))
    write_json(os.path.join(sb, "model_index.json"), {
        "_class_name": "PNDMPipeline", "_diffusers_version": "0.30.3",
        "scheduler": ["diffusers", "PNDMScheduler"], "unet": ["diffusers", "UNet2DModel"]})
    for dp, _, fs in os.walk(sb):
        for f in sorted(fs):
            full = os.path.join(dp, f)
            hub_put(repo, b, os.path.relpath(full, sb), full)
    return repo, a, b


# ---- diffusers' outputs ----------------------------------------------------------------------
def run_pipeline(unet, sched_cfg, seed):
    """PNDMPipeline.__call__ (diffusers 0.30.3), with the final latents kept."""
    sched = PNDMScheduler.from_config(sched_cfg)
    g = torch.manual_seed(seed)
    shape = (BATCH, unet.config.in_channels, unet.config.sample_size, unet.config.sample_size)
    from diffusers.utils.torch_utils import randn_tensor
    image = randn_tensor(shape, generator=g, device=torch.device("cpu"))
    sched.set_timesteps(STEPS)
    with torch.no_grad():
        for t in sched.timesteps:
            out = unet(image, t).sample
            image = sched.step(out, t, image).prev_sample
    latents = image.numpy().copy()
    images = (image / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    # the real pipeline gives the same images
    pipe = PNDMPipeline(unet=unet, scheduler=PNDMScheduler.from_config(sched_cfg))
    pipe.set_progress_bar_config(disable=True)
    ref = pipe(batch_size=BATCH, num_inference_steps=STEPS, generator=torch.manual_seed(seed), output_type="np").images
    assert np.array_equal(ref, images), "loop != PNDMPipeline"
    return latents.astype(np.float32), images.astype(np.float32)


def unet_from_state_dict(sd):
    m = UNet2DModel(**CONFIG)
    m._convert_deprecated_attention_blocks(sd)
    missing, unexpected = m.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True)
    return m.eval()


# ---- hostile pickles ---------------------------------------------------------------------------
def pkl(*parts):
    return b"".join(p if isinstance(p, bytes) else p.encode() for p in parts)


def binunicode(s):
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def tensor_pickle(entries, proto=2):
    """An OrderedDict pickle, entries: [(name, value_opcodes)] (value_opcodes push one value)."""
    body = b"\x80" + bytes([proto]) + b"ccollections\nOrderedDict\nq\x00)R(" if proto < 4 else b""
    for name, val in entries:
        body += binunicode(name) + val
    return body + b"u."


def rebuild(key, numel, offset, size, stride, storage="FloatStorage"):
    """_rebuild_tensor_v2(('storage', torch.<storage>, key, 'cpu', numel), offset, size, stride, False, OrderedDict())"""
    def tup(v):
        return b"(" + b"".join(b"J" + struct.pack("<i", x) if -2**31 <= x < 2**31 else b"\x8a\x08" + struct.pack("<q", x)
                                for x in v) + b"t"
    return (b"ctorch._utils\n_rebuild_tensor_v2\n(" + b"(" + binunicode("storage") + f"ctorch\n{storage}\n".encode()
            + binunicode(key) + binunicode("cpu") + b"J" + struct.pack("<i", numel) + b"tQ"
            + b"J" + struct.pack("<i", offset) + tup(size) + tup(stride) + b"\x89ccollections\nOrderedDict\n)Rt" + b"R")


def torch_zip(path, data_pkl, records, compress=None, prefix="archive"):
    """A torch.save-like zip: prefix/data.pkl, prefix/data/<key>, prefix/version."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        def put(name, data, method=zipfile.ZIP_STORED):
            zi = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            zi.compress_type = method
            z.writestr(zi, data)
        put(f"{prefix}/data.pkl", data_pkl)
        for k, v in records.items():
            put(f"{prefix}/data/{k}", v, compress or zipfile.ZIP_STORED)
        put(f"{prefix}/version", b"3\n")


class Reduce:
    def __init__(self, fn, args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return (self.fn, self.args)


def make_hostile(d, tiny_cfg_dir):
    """Each file must be refused with exit 3, one line, no output file and nothing run
    (tests/cli_checkpoints.sh). CANARY_* files are what a payload would create in the cwd."""
    import builtins
    import pickle
    import subprocess
    os.makedirs(d, exist_ok=True)
    shutil.copyfile(os.path.join(tiny_cfg_dir, "config.json"), os.path.join(d, "config.json"))
    good = rebuild("0", 4, 0, (4,), (1,))
    four = struct.pack("<4f", 1, 2, 3, 4)
    cases = {}

    def payload(name, obj):
        # fix_imports=False: the names as Python 3 has them (protocol 2 would write __builtin__.eval)
        p = pickle.dumps(collections.OrderedDict([("conv_in.bias", obj)]), protocol=2, fix_imports=False)
        cases[name] = ("zip", p, {"0": four})

    payload("reduce_os_system", Reduce(os.system, ("touch CANARY_os_system",)))
    payload("reduce_eval", Reduce(builtins.eval, ("open('CANARY_eval', 'w')",)))
    payload("reduce_popen", Reduce(subprocess.Popen, (["touch", "CANARY_popen"],)))
    p4 = pickle.dumps(collections.OrderedDict([("x", Reduce(os.system, ("touch CANARY_stack_global",)))]), protocol=4)
    cases["reduce_stack_global_p4"] = ("zip", p4, {})
    cases["global_numpy"] = ("zip", pkl(b"\x80\x02cnumpy.core.multiarray\n_reconstruct\nq\x00."), {})
    cases["reduce_storage_class"] = ("zip", pkl(b"\x80\x02ctorch\nFloatStorage\n)R."), {})
    cases["reduce_string"] = ("zip", pkl(b"\x80\x02", binunicode("os.system"), b")R."), {})
    cases["build_on_tensor"] = ("zip", tensor_pickle([("t", good + b"}b")]), {"0": four})
    cases["missing_data"] = ("zip", tensor_pickle([("conv_in.bias", rebuild("7", 4, 0, (4,), (1,)))]), {"0": four})
    cases["view_past_storage"] = ("zip", tensor_pickle([("conv_in.bias", rebuild("0", 4, 2, (4,), (1,)))]), {"0": four})
    cases["stride_past_storage"] = ("zip", tensor_pickle([("conv_in.weight", rebuild("0", 4, 0, (2, 2), (3, 1)))]),
                                    {"0": four})
    cases["negative_dim"] = ("zip", tensor_pickle([("conv_in.bias", rebuild("0", 4, 0, (-1, 4), (4, 1)))]), {"0": four})
    cases["huge_dims"] = ("zip", tensor_pickle([("conv_in.bias", rebuild("0", 4, 0, (2**40, 2**40), (0, 0)))]),
                          {"0": four})
    cases["storage_size_mismatch"] = ("zip", tensor_pickle([("conv_in.bias", rebuild("0", 8, 0, (4,), (1,)))]),
                                      {"0": four})
    cases["float64"] = ("zip", tensor_pickle([("conv_in.bias", rebuild("0", 4, 0, (4,), (1,), "DoubleStorage"))]),
                        {"0": four * 2})
    cases["not_a_dict"] = ("zip", pkl(b"\x80\x02]q\x00."), {})
    cases["deep_nesting"] = ("zip", b"\x80\x02" + b"]" * 2000 + b"a" * 1999 + b".", {})
    cases["deep_marks"] = ("zip", b"\x80\x02" + b"(" * 5000 + b"N" + b"t" * 5000 + b".", {})
    cases["unbounded_memo"] = ("zip", b"\x80\x02Nr\xf0\xff\xff\xff.", {})
    cases["memo_flood"] = ("zip", b"\x80\x02N" + b"".join(b"r" + struct.pack("<I", i * 60000) for i in range(80)) + b".", {})
    cases["protocol5_buffer"] = ("zip", b"\x80\x05\x97.", {})
    cases["no_stop"] = ("zip", tensor_pickle([("conv_in.bias", good)])[:-1], {"0": four})
    cases["cyclic_list"] = ("zip", b"\x80\x02]q\x00h\x00a.", {})
    for name, (kind, p, recs) in cases.items():
        torch_zip(os.path.join(d, name + ".bin"), p, recs)
    # zip-level
    ok_pkl = tensor_pickle([("conv_in.bias", good)])
    torch_zip(os.path.join(d, "deflated.bin"), ok_pkl, {"0": four * 64}, compress=zipfile.ZIP_DEFLATED)
    torch_zip(os.path.join(d, "good.bin"), ok_pkl, {"0": four})   # loads, then the binder refuses (one tensor)
    full = open(os.path.join(d, "good.bin"), "rb").read()
    open(os.path.join(d, "truncated.bin"), "wb").write(full[: len(full) // 2])
    e = full.rfind(b"PK\x05\x06")
    bad = bytearray(full)
    bad[e + 16:e + 20] = struct.pack("<I", len(full) + 1000)   # central directory offset past the end
    open(os.path.join(d, "cd_outside.bin"), "wb").write(bytes(bad))
    bad = bytearray(full)
    lho = full.find(b"PK\x01\x02")
    bad[lho + 8:lho + 10] = struct.pack("<H", 1)                # encrypted flag on the first entry
    open(os.path.join(d, "encrypted.bin"), "wb").write(bytes(bad))
    with zipfile.ZipFile(os.path.join(d, "outside_prefix.bin"), "w") as z:
        for n, data in (("archive/data.pkl", ok_pkl), ("archive/data/0", four), ("archive/version", b"3\n"),
                        ("other/evil", b"x")):
            z.writestr(zipfile.ZipInfo(n, date_time=(1980, 1, 1, 0, 0, 0)), data)
    with zipfile.ZipFile(os.path.join(d, "zip_not_torch.bin"), "w") as z:
        z.writestr(zipfile.ZipInfo("readme/a.txt", date_time=(1980, 1, 1, 0, 0, 0)), b"hello")
    # overlapping: entry B's local header and data lie inside entry A's data (both headers valid)
    def local(name, data):
        n = name.encode()
        return struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 0, 0, 0x21, zipfile.crc32(data), len(data), len(data),
                           len(n), 0) + n + data

    def central(name, data, off):
        n = name.encode()
        return struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 0, 0, 0x21, zipfile.crc32(data), len(data),
                           len(data), len(n), 0, 0, 0, 0, 0, off) + n
    b_rec = local("archive/data/0", four)
    a_data = ok_pkl + b_rec
    blob = local("archive/data.pkl", a_data)
    b_off = 30 + len("archive/data.pkl") + len(ok_pkl)
    ver = local("archive/version", b"3\n")
    v_off = len(blob)
    blob += ver
    cd = central("archive/data.pkl", a_data, 0) + central("archive/data/0", four, b_off) + \
        central("archive/version", b"3\n", v_off)
    blob += cd + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 3, 3, len(cd), len(blob), 0)
    open(os.path.join(d, "overlap.bin"), "wb").write(blob)
    # legacy format with a payload in the state-dict pickle
    leg = io.BytesIO()
    for obj in (0x1950a86a20f9469cfc6c, 1001, {"protocol_version": 1001, "little_endian": True,
                                               "type_sizes": {"short": 2, "int": 4, "long": 4}}):
        pickle.dump(obj, leg, protocol=2)
    pickle.dump(collections.OrderedDict([("x", Reduce(os.system, ("touch CANARY_legacy",)))]), leg, protocol=2)
    open(os.path.join(d, "legacy_os_system.bin"), "wb").write(leg.getvalue())
    # non-weights files given as a model
    open(os.path.join(d, "image.png"), "wb").write(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(17))
    open(os.path.join(d, "notes.txt"), "w").write("these are not weights\n")
    open(os.path.join(d, "random.safetensors"), "wb").write(bytes((i * 73 + 41) % 251 for i in range(300)))
    open(os.path.join(d, "lfs_pointer.safetensors"), "w").write(
        "version https://git-lfs.github.com/spec/v1\noid sha256:" + "0" * 64 + "\nsize 1234\n")
    # the generator must not have run any payload
    for f in os.listdir("."):
        assert not f.startswith("CANARY"), f


def make_small(d):
    os.makedirs(d, exist_ok=True)
    sd = collections.OrderedDict()
    sd["a.weight"] = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    sd["b.bias"] = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float16)
    sd["c"] = torch.tensor([3.0, -0.25], dtype=torch.bfloat16)
    base = torch.arange(10, dtype=torch.float32)
    sd["v1"] = base[2:5]
    sd["v2"] = base[5:8].view(3, 1)
    sd["t"] = torch.arange(6, dtype=torch.float32).reshape(2, 3).t()
    torch_save(sd, os.path.join(d, "small_zip.bin"))
    torch_save(sd, os.path.join(d, "small_legacy.bin"), legacy=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "data", "ckpt"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    out = os.path.abspath(args.out)
    if os.path.exists(out):
        shutil.rmtree(out)
    os.makedirs(out)
    tmp = os.path.join(out, ".tmp")
    os.makedirs(tmp)
    model = make_model()
    sd = model.state_dict()
    sched_cfg = PNDMScheduler().config

    repo, ca, cb = make_hub(out, model, tmp)
    d = model_folder(os.path.join(out, "model_bin_zip"), model)
    torch_save(old_names(sd), os.path.join(d, "diffusion_pytorch_model.bin"))
    d = model_folder(os.path.join(out, "model_bin_legacy"), model)
    torch_save(sd, os.path.join(d, "diffusion_pytorch_model.bin"), legacy=True)
    d = model_folder(os.path.join(out, "model_bin_bf16"), model)
    torch_save(collections.OrderedDict((k, v.bfloat16()) for k, v in sd.items()),
               os.path.join(d, "diffusion_pytorch_model.bin"))
    d = model_folder(os.path.join(out, "model_bin_views"), model)
    torch_save(views_state_dict(sd), os.path.join(d, "diffusion_pytorch_model.bin"))
    d = model_folder(os.path.join(out, "model_bin_zip64"), model)
    zip64_rewrite(os.path.join(out, "model_bin_zip", "diffusion_pytorch_model.bin"),
                  os.path.join(d, "diffusion_pytorch_model.bin"))
    for kind in ("st", "bin"):
        d = model_folder(os.path.join(out, f"model_sharded_{kind}"), model)
        wm = {}
        parts = shards(sd)
        for i, part in enumerate(parts):
            ext = "safetensors" if kind == "st" else "bin"
            fn = f"diffusion_pytorch_model-{i + 1:05d}-of-{len(parts):05d}.{ext}"
            if kind == "st":
                save_file({k: v.contiguous() for k, v in part.items()}, os.path.join(d, fn))
            else:
                torch_save(part, os.path.join(d, fn))
            wm.update({k: fn for k in part})
        idx = "diffusion_pytorch_model.safetensors.index.json" if kind == "st" else "diffusion_pytorch_model.bin.index.json"
        write_json(os.path.join(d, idx), {"metadata": {"total_size": sum(v.numel() * 4 for v in sd.values())},
                                          "weight_map": wm})
    pv = os.path.join(out, "pipe_variant")
    model_folder(os.path.join(pv, "unet"), model)
    os.makedirs(os.path.join(pv, "scheduler"))
    os.rename(os.path.join(pv, "unet", "scheduler_config.json"), os.path.join(pv, "scheduler", "scheduler_config.json"))
    save_file({k: v.contiguous() for k, v in sd.items()}, os.path.join(pv, "unet", "diffusion_pytorch_model.safetensors"))
    save_file({k: v.half().contiguous() for k, v in sd.items()},
              os.path.join(pv, "unet", "diffusion_pytorch_model.fp16.safetensors"))
    write_json(os.path.join(pv, "model_index.json"), {
        "_class_name": "PNDMPipeline", "_diffusers_version": "0.30.3",
        "scheduler": ["diffusers", "PNDMScheduler"], "unet": ["diffusers", "UNet2DModel"]})
    make_hostile(os.path.join(out, "hostile"), os.path.join(out, "model_bin_zip"))
    make_small(os.path.join(out, "small"))
    shutil.rmtree(tmp)

    # ---- the cases: how diffusers loads each, and what pndm-gen is given ----
    hub = os.path.join(out, "hub")
    os.environ["HF_HUB_OFFLINE"] = "1"
    snap_a = os.path.join(repo, "snapshots", ca)

    def from_hub(revision=None, variant=None, subfolder=None):
        return UNet2DModel.from_pretrained(REPO, cache_dir=hub, local_files_only=True, revision=revision,
                                           variant=variant, subfolder=subfolder)

    def pipe_unet(path, variant=None):
        return PNDMPipeline.from_pretrained(path, variant=variant).unet

    def fold(name, variant=None):
        return UNet2DModel.from_pretrained(os.path.join(out, name), variant=variant)

    def unet_from_shards(name, index):
        wm = json.load(open(os.path.join(out, name, index)))["weight_map"]
        sd = collections.OrderedDict()
        for f in sorted(set(wm.values())):
            sd.update(load_state_dict(os.path.join(out, name, f)))
        return unet_from_state_dict(sd)

    rel_repo = os.path.relpath(repo, out)
    rel_a = os.path.relpath(snap_a, out)
    cases = [
        # name, env, model (relative to tests/data/ckpt; {D} = that folder), flags, loader, unet, seed
        ("hub_id", "HF_HUB_CACHE={D}/hub", REPO, "",
         f"PNDMPipeline.from_pretrained('{REPO}', cache_dir=hub)",
         lambda: PNDMPipeline.from_pretrained(REPO, cache_dir=hub, local_files_only=True).unet, 1),
        ("hub_home", "HF_HOME={D}", REPO, "", f"UNet2DModel.from_pretrained('{REPO}') (HF_HOME)", lambda: from_hub(), 1),
        ("hub_repo_folder", "", rel_repo, "", "the same repository, given as its models--* folder", lambda: from_hub(), 1),
        ("hub_snapshot", "", rel_a, "", "PNDMPipeline.from_pretrained(snapshot folder)", lambda: pipe_unet(snap_a), 1),
        ("hub_revision_variant", "HF_HUB_CACHE={D}/hub", REPO, "--revision v2 --variant fp16",
         f"UNet2DModel.from_pretrained('{REPO}', revision='v2', subfolder='unet', variant='fp16')",
         lambda: from_hub(revision="v2", variant="fp16", subfolder="unet"), 2),
        ("hub_commit_variant", "HF_HUB_CACHE={D}/hub", REPO, f"--revision {cb} --variant fp16",
         f"UNet2DModel.from_pretrained('{REPO}', revision='{cb}', subfolder='unet', variant='fp16')",
         lambda: from_hub(revision=cb, variant="fp16", subfolder="unet"), 2),
        ("bin_zip_old_names", "", "model_bin_zip", "", "UNet2DModel.from_pretrained(folder) (.bin zip, old names)",
         lambda: fold("model_bin_zip"), 3),
        ("bin_zip_file", "", "model_bin_zip/diffusion_pytorch_model.bin", "",
         "the same .bin given as a file (config.json beside it)", lambda: fold("model_bin_zip"), 3),
        ("bin_legacy", "", "model_bin_legacy", "", "UNet2DModel.from_pretrained(folder) (legacy .bin)",
         lambda: fold("model_bin_legacy"), 4),
        ("bin_bf16", "", "model_bin_bf16", "", "UNet2DModel.from_pretrained(folder) (bf16 .bin, loaded as float32)",
         lambda: fold("model_bin_bf16"), 5),
        ("bin_views", "", "model_bin_views", "", "UNet2DModel.from_pretrained(folder) (.bin of views)",
         lambda: fold("model_bin_views"), 6),
        ("bin_zip64", "", "model_bin_zip64", "", "UNet2DModel.from_pretrained(folder) (zip64 .bin)",
         lambda: fold("model_bin_zip64"), 7),
        ("sharded_safetensors", "", "model_sharded_st", "",
         "diffusers' load_state_dict on each shard + UNet2DModel.load_state_dict (from_pretrained of a sharded "
         "folder needs accelerate, which the reference environment lacks)",
         lambda: unet_from_shards("model_sharded_st", "diffusion_pytorch_model.safetensors.index.json"), 8),
        ("sharded_bin", "", "model_sharded_bin", "",
         "diffusers' load_state_dict on each shard + UNet2DModel.load_state_dict (diffusers 0.30 looks for "
         "safetensors indexes only)",
         lambda: unet_from_shards("model_sharded_bin", "diffusion_pytorch_model.bin.index.json"), 8),
        ("pipe_f32", "", "pipe_variant", "", "PNDMPipeline.from_pretrained(folder)", lambda: pipe_unet(pv), 9),
        ("pipe_fp16_variant", "", "pipe_variant", "--variant fp16", "PNDMPipeline.from_pretrained(folder, variant='fp16')",
         lambda: pipe_unet(pv, variant="fp16"), 9),
    ]
    lines = []
    for name, env, mdl, flags, how, loader, seed in cases:
        unet = loader().eval()
        lat, img = run_pipeline(unet, sched_cfg, seed)
        rd = os.path.join(out, "ref", name)
        os.makedirs(rd)
        np.save(os.path.join(rd, "final_latents.npy"), lat)
        np.save(os.path.join(rd, "images.npy"), img)
        lines.append("|".join([name, env, mdl, f"-n {STEPS} -b {BATCH} -s {seed} {flags}".strip(), how]))
        print(f"{name:24s} max|latents| {np.abs(lat).max():.4g}")
    with open(os.path.join(out, "cases.txt"), "w") as f:
        f.write("# NAME|ENV|MODEL|FLAGS|HOW DIFFUSERS LOADED IT  (tools/make_ckpt_fixtures.py; "
                "ref/NAME/{final_latents,images}.npy)\n")
        f.write("\n".join(lines) + "\n")
    sizes = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(out) for f in fs
                if not os.path.islink(os.path.join(dp, f)))
    print(f"wrote {out}: {sizes} bytes")


if __name__ == "__main__":
    sys.exit(main())
