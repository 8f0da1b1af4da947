#!/usr/bin/env python3
"""pndm-gen against diffusers' PNDMPipeline (PyTorch eager, channels_last, torch.compile), ONNX
Runtime and OpenVINO, interleaved.

Every measurement is one fresh process (so its peak RSS is its own), and the engines are run
in turn, A B C A B C ..., repeat after repeat, so that slow drifts of the machine (other jobs,
thermal state) hit every engine alike; the median of the repeats is reported.

  pndm   build-bench/pndm-gen -m MODEL.safetensors -n STEPS -b B -t N -s 0 -q --json -o out.npy
         time = "generate_s" of its JSON (noise + sampling loop; model loading excluded)
  torch  diffusers PNDMPipeline(UNet2DModel, PNDMScheduler) with torch.set_num_threads(N),
         output_type="np"; time = the pipeline call (model loading excluded)
  pndm-openblas   the same with --gemm openblas (the matrix products on single-threaded OpenBLAS)
  torch-cl        the same with the UNet in torch.channels_last memory format
  torch-compile   the same with unet = torch.compile(unet) (compilation excluded: see warm-up)
  ort    ONNX Runtime (intra_op_num_threads = N) running the UNet exported by make_models.py,
         inside the same loop as PNDMPipeline.__call__ with diffusers' PNDMScheduler; time =
         the loop (session creation excluded)
  openvino        OpenVINO (INFERENCE_PRECISION_HINT f32, INFERENCE_NUM_THREADS = N, latency
         hint) on the same ONNX export inside the same loop

Every Python engine makes one warm-up UNet call (batch B, the first timestep) before the timed
loop, excluded from the time (it is where torch.compile compiles and OpenVINO finishes its
set-up); pndm-gen's time includes its first call.
Every engine starts from the same noise (torch.manual_seed(0); diffusers randn_tensor), so
the images must agree: the table reports max |image - torch image|.

Effective GFLOP/s = direct-convolution FLOPs per image per forward (make_models.py) x UNet calls
x batch / time. % of peak divides it by the FMA peak that bench/fma_peak.c measured for the same
number of threads (best ISA).

  python3 bench/run_bench.py --quick                 # smoke run: 4 steps, batch 1, 1 thread
  python3 bench/run_bench.py                         # full run, writes bench/BENCHMARKS.md
  python3 bench/run_bench.py --engines pndm,torch --batches 1 --threads 2 --repeats 5
  python3 bench/run_bench.py --python /usr/bin/python3 --python /work/venv-torch2/bin/python
"""
import argparse
import datetime
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

ENGINES = ("pndm", "pndm-openblas", "torch", "torch-cl", "torch-compile", "ort", "openvino")
DEFAULT_PYTHONS = ("/work/venv-ref/bin/python", "/work/venv-bench/bin/python")  # torch 1.13; torch 2.x
BENCH_PYTHON = "/work/venv-bench/bin/python"
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BUILD = os.path.join(ROOT, "build-bench")

# ---------------------------------------------------------------------------------------------
# Workers: run as `python run_bench.py --worker torch|ort|versions ...` in a fresh process.


def _rss_mib():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def worker_versions():
    out = {"python": platform.python_version(), "executable": sys.executable}
    try:
        import openvino
        out["openvino"] = openvino.__version__
    except ImportError:
        out["openvino"] = None
    try:
        import torch
        out["torch"] = torch.__version__
        try:
            cfg = torch.__config__.show()
            keep = []
            for ln in cfg.splitlines():
                if "CPU capability" in ln:
                    keep.append(ln.strip(" -"))
                elif "Build settings" in ln:  # one long line: keep the BLAS / threading fields
                    keep += [kv.strip() for kv in ln.split(",")
                             if kv.strip().split("=")[0] in ("BLAS_INFO", "USE_MKLDNN", "USE_OPENMP", "TORCH_VERSION")]
                elif "BLAS" in ln or "MKL" in ln or "oneDNN" in ln or "OpenMP" in ln:
                    keep.append(ln.strip(" -"))
            out["torch_blas"] = keep
        except Exception:  # noqa: BLE001
            pass
    except ImportError:
        out["torch"] = None
    try:
        import diffusers
        out["diffusers"] = diffusers.__version__
    except ImportError:
        out["diffusers"] = None
    try:
        import onnxruntime
        out["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        out["onnxruntime"] = None
    try:
        import numpy
        out["numpy"] = numpy.__version__
    except ImportError:
        out["numpy"] = None
    print(json.dumps(out))


def worker_run(a):
    """One generation; prints one JSON line. a: engine, folder, onnx, steps, batch, threads, seed, out."""
    import numpy as np
    import safetensors.torch  # noqa: F401  (diffusers 0.30 loads .safetensors through it without importing it)
    import torch
    torch_kind = a.worker.startswith("torch")
    torch.set_num_threads(a.threads if torch_kind else 1)
    from diffusers import PNDMPipeline, PNDMScheduler, UNet2DModel
    from diffusers.utils.torch_utils import randn_tensor
    rss_import = _rss_mib()
    res = {"engine": a.worker}
    t0 = time.perf_counter()
    scheduler = PNDMScheduler.from_pretrained(a.folder)
    cfg = json.load(open(os.path.join(a.folder, "config.json")))
    c, s = cfg["in_channels"], cfg["sample_size"]
    if torch_kind:
        unet = UNet2DModel.from_pretrained(a.folder).eval()
        if a.worker == "torch-cl":
            unet = unet.to(memory_format=torch.channels_last)
        run_unet = torch.compile(unet) if a.worker == "torch-compile" else unet
        pipe = PNDMPipeline(unet=run_unet, scheduler=scheduler)
        pipe.set_progress_bar_config(disable=True)
        res["load_s"] = time.perf_counter() - t0
        scheduler.set_timesteps(a.steps)
        tw = time.perf_counter()
        with torch.no_grad():  # the warm-up call (excluded)
            run_unet(torch.zeros(a.batch, c, s, s), scheduler.timesteps[0])
        res["warmup_s"] = time.perf_counter() - tw
        rss_load = _rss_mib()
        g = torch.Generator().manual_seed(a.seed)
        t1 = time.perf_counter()
        images = pipe(batch_size=a.batch, num_inference_steps=a.steps, generator=g, output_type="np").images
        res["generate_s"] = time.perf_counter() - t1
        res["unet_calls"] = len(pipe.scheduler.timesteps)  # the pipeline calls the UNet once per timestep
    else:
        if a.worker == "ort":
            import onnxruntime as ort
            so = ort.SessionOptions()
            so.intra_op_num_threads = a.threads
            so.inter_op_num_threads = 1
            so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            sess = ort.InferenceSession(a.onnx, so, providers=["CPUExecutionProvider"])

            def run_unet(x, tt):
                return sess.run(["out"], {"sample": x, "timestep": tt})[0]
        else:
            import openvino as ov
            core = ov.Core()
            compiled = core.compile_model(core.read_model(a.onnx), "CPU", {
                "INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": a.threads, "PERFORMANCE_HINT": "LATENCY"})
            req = compiled.create_infer_request()
            out_port = compiled.output(0)

            def run_unet(x, tt):
                return req.infer({"sample": x, "timestep": tt})[out_port].copy()
        res["load_s"] = time.perf_counter() - t0
        scheduler.set_timesteps(a.steps)
        tw = time.perf_counter()
        run_unet(np.zeros((a.batch, c, s, s), np.float32), np.full((a.batch,), int(scheduler.timesteps[0]), np.int64))
        res["warmup_s"] = time.perf_counter() - tw
        rss_load = _rss_mib()
        g = torch.Generator().manual_seed(a.seed)
        t1 = time.perf_counter()
        # PNDMPipeline.__call__ with the UNet call replaced by the ONNX Runtime / OpenVINO model.
        image = randn_tensor((a.batch, c, s, s), generator=g, device=torch.device("cpu"))
        scheduler.set_timesteps(a.steps)
        n = 0
        for t in scheduler.timesteps:
            tt = np.full((a.batch,), int(t), dtype=np.int64)
            out = run_unet(image.numpy(), tt)
            n += 1
            image = scheduler.step(torch.from_numpy(out), t, image).prev_sample
        image = (image / 2 + 0.5).clamp(0, 1)
        images = image.cpu().permute(0, 2, 3, 1).numpy()
        res["generate_s"] = time.perf_counter() - t1
        res["unet_calls"] = n
    res["rss_after_import_mib"] = rss_import
    res["rss_after_load_mib"] = rss_load
    np.save(a.out, np.ascontiguousarray(images, dtype=np.float32))
    print(json.dumps(res))


# ---------------------------------------------------------------------------------------------
# Driver.


def sh(cmd, **kw):
    return subprocess.run(cmd, shell=isinstance(cmd, str), capture_output=True, text=True, **kw)


def run_measured(cmd, env, timeout):
    """Run cmd (list) as a child; returns (rc, stdout, stderr, wall_s, peak_rss_mib of that child)."""
    with tempfile.TemporaryFile("w+") as fo, tempfile.TemporaryFile("w+") as fe:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=fo, stderr=fe, env=env)
        deadline = t0 + timeout
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                p.kill()
                pid, status, ru = os.wait4(p.pid, 0)
                break
            time.sleep(0.02)
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)  # keep Popen from waiting again
        fo.seek(0)
        fe.seek(0)
        return p.returncode, fo.read(), fe.read(), wall, ru.ru_maxrss / 1024.0


def last_json(text):
    """The last JSON document in text (pndm-gen --json prints one pretty object; workers one line)."""
    text = text.strip()
    start = text.rfind("\n{")
    for cand in ([text[start + 1:]] if start >= 0 else []) + [text]:
        try:
            return json.loads(cand)
        except (json.JSONDecodeError, ValueError):
            continue
    # pretty-printed object: take from the first line that is exactly "{"
    lines = text.splitlines()
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].strip() == "{":
            try:
                return json.loads("\n".join(lines[i:]))
            except (json.JSONDecodeError, ValueError):
                break
    return None


def build_fma():
    os.makedirs(BUILD, exist_ok=True)
    cc = os.environ.get("CC", "cc")
    cmds = [
        [cc, "-O2", "-mavx512f", "-mavx2", "-mfma", "-c", os.path.join(HERE, "fma_peak_kernels.c"),
         "-o", os.path.join(BUILD, "fma_peak_kernels.o")],
        [cc, "-O2", "-std=c11", "-pthread", os.path.join(HERE, "fma_peak.c"),
         os.path.join(BUILD, "fma_peak_kernels.o"), "-o", os.path.join(BUILD, "fma_peak")],
    ]
    for c in cmds:
        r = subprocess.run(c, capture_output=True, text=True)
        if r.returncode:
            raise SystemExit("fma_peak build failed: " + " ".join(c) + "\n" + r.stderr)
    return [rel(" ".join(shlex.quote(x) for x in c)) for c in cmds]


def machine_info():
    info = {}
    r = sh(["lscpu"])
    for line in r.stdout.splitlines():
        k, _, v = line.partition(":")
        k, v = k.strip(), v.strip()
        if k in ("Model name", "CPU(s)", "Thread(s) per core", "Core(s) per socket", "Socket(s)", "CPU max MHz",
                 "Hypervisor vendor", "L1d cache", "L2 cache", "L3 cache", "BogoMIPS"):
            info[k] = v
        if k == "Flags":
            fl = set(v.split())
            info["SIMD"] = " ".join(f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile")
                                    if f in fl)
    try:
        with open("/proc/meminfo") as f:
            info["MemTotal"] = f.readline().split(":")[1].strip()
    except OSError:
        pass
    try:
        with open("/proc/cpuinfo") as f:
            cpu = {}
            for line in f:
                k, _, v = line.partition(":")
                k = k.strip()
                if k in ("vendor_id", "cpu family", "model") and k not in cpu:
                    cpu[k] = v.strip()
                if not line.strip():
                    break
        info["cpu id"] = f"{cpu.get('vendor_id', '?')} family {cpu.get('cpu family', '?')} model {cpu.get('model', '?')}"
    except OSError:
        info["cpu id"] = platform.machine()
    info["kernel"] = platform.release()
    try:
        with open("/proc/loadavg") as f:
            info["load average at start (1, 5, 15 min)"] = " ".join(f.read().split()[:3])
    except OSError:
        pass
    r = sh("cc --version | head -1")
    info["cc"] = r.stdout.strip()
    r = sh("dpkg-query -W -f='${Package} ${Version}\\n' 'libopenblas0*' 'libopenblas-dev' 2>/dev/null")
    info["openblas"] = "; ".join(ln for ln in r.stdout.splitlines() if len(ln.split()) == 2)  # installed ones
    r = sh("pkg-config --modversion openblas 2>/dev/null")
    if r.stdout.strip():
        info["openblas_pkgconfig"] = r.stdout.strip()
    r = sh(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"])
    info["git"] = r.stdout.strip() or "unknown"
    r = sh(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"])
    if r.stdout.strip():
        info["git"] += " (with uncommitted changes)"
    return info


def rel(text):
    """Paths inside the repository written relative to its root (the report's commands run from there)."""
    return text.replace(ROOT + os.sep, "")


def fmt_cmd(cmd, env_extra):
    pre = " ".join(f"{k}={v}" for k, v in env_extra.items())
    return rel((pre + " " if pre else "") + " ".join(shlex.quote(c) for c in cmd))


REPORT_HEAD = """# pndm benchmarks

One section per machine the benchmark ran on (CPU model and id, SIMD, its own FMA peak): figures
from different machines are never mixed in one table. Each section is written by
`bench/run_bench.py`, which replaces the section of the machine it runs on and keeps the others.
"""


def write_section(report, mid, section):
    """Replace the section of machine mid in report (between its markers), or append it."""
    text = open(report).read() if os.path.exists(report) else REPORT_HEAD
    start, end = f"<!-- machine: {mid} -->", f"<!-- end machine: {mid} -->"
    i, j = text.find(start), text.find(end)
    if i >= 0 and j > i:
        text = text[:i] + section + text[j + len(end):]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    with open(report, "w") as fh:
        fh.write(text)


def lead_table(rows, configs):
    """Per configuration: pndm's time against the fastest other engine."""
    out = ["| model | steps | batch | threads | pndm (s) | pndm-openblas (s) | fastest peer | its time (s) | pndm's lead |",
           "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |"]
    for m, steps, b, t in configs:
        rs = [r for r in rows if (r["model"], r["steps"], r["batch"], r["threads"]) == (m, steps, b, t) and "time_s" in r]
        own = {r["engine"]: r["time_s"] for r in rs if r["engine"].startswith("pndm")}
        peers = [r for r in rs if not r["engine"].startswith("pndm")]
        if "pndm" not in own or not peers:
            continue
        best = min(peers, key=lambda r: r["time_s"])
        ob = own.get("pndm-openblas")
        out.append(f"| {m} | {steps} | {b} | {t} | {own['pndm']:.3f} | {'–' if ob is None else format(ob, '.3f')} | "
                   f"{best['engine']} | {best['time_s']:.3f} | {best['time_s'] / own['pndm']:.2f}× |")
    return out if len(out) > 2 else []


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", choices=["torch", "torch-cl", "torch-compile", "ort", "openvino", "versions"],
                    help=argparse.SUPPRESS)
    ap.add_argument("--folder", help=argparse.SUPPRESS)
    ap.add_argument("--onnx", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--steps", type=int, default=50, help="inference steps of the cifar10 rows (default 50 = 59 UNet calls)")
    ap.add_argument("--batches", default="1,4,16", help="cifar10 batch sizes (default 1,4,16)")
    ap.add_argument("--threads", default="1,2", help="thread counts of the cifar10 rows (default 1,2)")
    ap.add_argument("--models", default="cifar10,celebahq256", help="rows to run: cifar10, celebahq256 (default both)")
    ap.add_argument("--big-steps", type=int, default=10,
                    help="inference steps of the celebahq256 row (default 10 = 19 UNet calls; 50 steps take very long)")
    ap.add_argument("--big-batch", type=int, default=1, help="batch of the celebahq256 row (default 1)")
    ap.add_argument("--big-threads", type=int, default=2, help="threads of the celebahq256 row (default 2)")
    ap.add_argument("--engines", default=",".join(ENGINES), help=f"subset of {','.join(ENGINES)} (default all; "
                    "torch-cl and torch-compile run with the --python interpreters that have torch 2.x)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per engine and configuration; median reported (default 3)")
    ap.add_argument("--python", action="append",
                    help="interpreter for the PyTorch side (default: " + ", ".join(DEFAULT_PYTHONS) + " where present); "
                    "repeat to compare several")
    ap.add_argument("--ort-python", default=None,
                    help=f"interpreter for ONNX Runtime and OpenVINO (default {BENCH_PYTHON} where present, else this one)")
    ap.add_argument("--pndm-gen", default=None, help="pndm-gen binary (default build-bench/pndm-gen, then build/pndm-gen)")
    ap.add_argument("--no-build", action="store_true",
                    help="do not (re)build build-bench/pndm-gen with CMake (Release) before the run")
    ap.add_argument("--models-dir", default=os.path.join(BUILD, "models"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=7200, help="seconds per run before it is killed")
    ap.add_argument("--fma-seconds", type=float, default=0.5)
    ap.add_argument("--no-fma", action="store_true", help="skip the FMA peak measurement")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: cifar10, 4 steps, batch 1, 1 thread, 1 repeat; writes build-bench/BENCHMARKS-quick.md")
    ap.add_argument("--dry-run", action="store_true", help="print the plan (configurations, engines, commands) and exit")
    ap.add_argument("--output", default=None,
                    help="markdown report whose section for this machine is replaced (default BENCHMARKS.md)")
    ap.add_argument("--json-output", default=None, help="raw results as JSON (default: next to the report, .json)")
    a = ap.parse_args()

    if a.worker == "versions":
        return worker_versions()
    if a.worker:
        a.threads = int(a.threads)
        return worker_run(a)

    argv_used = " ".join(shlex.quote(x) for x in sys.argv)
    if a.quick:
        # 4 steps: the fewest diffusers' PNDMScheduler accepts with the PRK warm-up (13 UNet calls)
        a.steps, a.batches, a.threads, a.models, a.repeats = 4, "1", "1", "cifar10", 1
        a.fma_seconds = min(a.fma_seconds, 0.1)
    pythons = a.python or ([p for p in DEFAULT_PYTHONS if os.access(p, os.X_OK)] or ["/usr/bin/python3"])
    if a.ort_python is None:
        a.ort_python = BENCH_PYTHON if os.access(BENCH_PYTHON, os.X_OK) else sys.executable
    engines = [e.strip() for e in a.engines.split(",") if e.strip()]
    for e in engines:
        if e not in ENGINES:
            raise SystemExit(f"unknown engine '{e}' (one of {', '.join(ENGINES)})")
    models = [m.strip() for m in a.models.split(",") if m.strip()]
    batches = [int(x) for x in a.batches.split(",")]
    threads = [int(x) for x in a.threads.split(",")]
    report = a.output or (os.path.join(BUILD, "BENCHMARKS-quick.md") if a.quick else os.path.join(ROOT, "BENCHMARKS.md"))
    json_out = a.json_output or os.path.splitext(report)[0] + ".json"

    # ---- the models (made once by make_models.py) ----
    need = [m for m in models if not os.path.exists(os.path.join(a.models_dir, m + ".json"))
            or (("ort" in engines or "openvino" in engines)
                and not os.path.exists(os.path.join(a.models_dir, m + ".onnx")))]
    if need and not a.dry_run:
        cmd = [sys.executable, os.path.join(HERE, "make_models.py"), "--models", ",".join(need), "--out", a.models_dir]
        if "ort" not in engines and "openvino" not in engines:
            cmd.append("--no-onnx")
        print("making models:", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
    try:
        minfo = {m: json.load(open(os.path.join(a.models_dir, m + ".json"))) for m in models}
    except OSError as e:
        raise SystemExit(f"{e}: run bench/make_models.py first")

    # ---- engines ----
    pndm_build = []
    if "pndm" in engines and a.pndm_gen is None and not a.no_build and not a.dry_run:
        pndm_build = [["cmake", "-S", ROOT, "-B", BUILD, "-DCMAKE_BUILD_TYPE=Release"],
                      ["cmake", "--build", BUILD, "-j", str(os.cpu_count() or 1), "--target", "pndm-gen"]]
        for c in pndm_build:
            r = sh(c)
            if r.returncode:
                print(f"building pndm-gen failed ({' '.join(c)}):\n{(r.stdout + r.stderr)[-2000:]}", flush=True)
                break
    pndm_gen = a.pndm_gen
    if pndm_gen is None:
        for cand in (os.path.join(BUILD, "pndm-gen"), os.path.join(ROOT, "build", "pndm-gen")):
            if os.access(cand, os.X_OK):
                pndm_gen = cand
                break
    eng_list = []  # (label, kind, python)
    versions = {}
    for kind in ("pndm", "pndm-openblas"):
        if kind not in engines:
            continue
        if pndm_gen and os.access(pndm_gen, os.X_OK):
            r = sh([pndm_gen, "--version"])
            versions[kind] = (r.stdout.strip() or r.stderr.strip()) + f" ({pndm_gen})"
            eng_list.append((kind, kind, None))
        else:
            print(f"pndm-gen not found ({pndm_gen or 'build-bench/pndm-gen, build/pndm-gen'}): skipping the {kind} column",
                  flush=True)
            versions[kind] = "not built"
    for py in pythons:
        if not any(e.startswith("torch") for e in engines):
            break
        r = sh([py, os.path.abspath(__file__), "--worker", "versions"])
        v = last_json(r.stdout) or {"error": r.stderr[-500:]}
        if not (v.get("torch") and v.get("diffusers")):
            print(f"{py}: no torch/diffusers ({v}); skipping", flush=True)
            continue
        tv = v["torch"].split("+")[0]
        major = int(tv.split(".")[0]) if tv.split(".")[0].isdigit() else 0
        for kind in ("torch", "torch-cl", "torch-compile"):
            if kind not in engines or (kind != "torch" and major < 2):
                continue
            label = {"torch": "torch", "torch-cl": "torch channels_last", "torch-compile": "torch.compile"}[kind]
            label += f" {tv}"
            versions[label] = v
            eng_list.append((label, kind, py))
    for kind in ("ort", "openvino"):
        if kind not in engines:
            continue
        r = sh([a.ort_python, os.path.abspath(__file__), "--worker", "versions"])
        v = last_json(r.stdout) or {"error": r.stderr[-500:]}
        mod = "onnxruntime" if kind == "ort" else "openvino"
        if v.get(mod):
            label = f"{'ONNX Runtime' if kind == 'ort' else 'OpenVINO f32'} {v[mod].split('-')[0]}"
            versions[label] = v
            eng_list.append((label, kind, a.ort_python))
        else:
            print(f"{a.ort_python}: no {mod}; skipping the {kind} column", flush=True)

    # ---- configurations ----
    configs = []
    for m in models:
        if m == "celebahq256":
            configs.append((m, a.big_steps, a.big_batch, a.big_threads))
        else:
            for t in threads:
                for b in batches:
                    configs.append((m, a.steps, b, t))

    if a.dry_run:
        est = 0.0
        for m, steps, b, t in configs:
            gfl = minfo[m]["flops"]["total"] / 1e9 * (steps + 9) * b
            est += gfl / (40.0 * t)
            print(f"{m}: {steps} steps ({steps + 9} UNet calls), batch {b}, {t} thread(s): {gfl:.0f} GFLOP per run")
        print(f"engines: {', '.join(lab for lab, _, _ in eng_list)}; {a.repeats} repeat(s); "
              f"{len(configs) * len(eng_list) * a.repeats} runs; about {est * len(eng_list) * a.repeats / 3600:.1f} h "
              f"at 40 GFLOP/s per thread")
        return
    # ---- FMA peak ----
    fma = None
    fma_cmds = []
    if not a.no_fma:
        fma_cmds = build_fma()
        all_thr = sorted(set(threads + ([a.big_threads] if "celebahq256" in models else [])))
        fcmd = [os.path.join(BUILD, "fma_peak"), "--seconds", str(a.fma_seconds), "--repeats", "3" if a.quick else "5",
                "--threads", ",".join(map(str, all_thr)), "--json"]
        fma_cmds.append(rel(" ".join(fcmd)))
        r = sh(fcmd)
        fma = last_json(r.stdout)
        if fma:
            for x in fma["results"]:
                print(f"FMA peak {x['isa']:6s} {x['threads']} thread(s): {x['gflops']:.1f} GFLOP/s", flush=True)

    def peak_for(n):
        if not fma:
            return None
        vals = [x["gflops"] for x in fma["results"] if x["threads"] == n]
        return max(vals) if vals else None

    tmpdir = tempfile.mkdtemp(prefix="pndm-bench-")
    results = {}  # (config, label) -> list of run dicts
    commands = {}
    total = len(configs) * len(eng_list) * a.repeats
    k = 0
    for rep in range(a.repeats):
        for cfg in configs:
            m, steps, b, t = cfg
            info = minfo[m]
            for label, kind, py in eng_list:
                k += 1
                out = os.path.join(tmpdir, f"{m}_s{steps}_b{b}_t{t}_{label.replace(' ', '_')}_r{rep}.npy")
                env = dict(os.environ)
                env_extra = {"OMP_NUM_THREADS": str(t)}
                env.update(env_extra)
                if kind.startswith("pndm"):
                    cmd = [pndm_gen, "-m", info["pndm_file"], "-n", str(steps), "-b", str(b), "-t", str(t),
                           "-s", str(a.seed), "-q", "--json", "-o", out]
                    if kind == "pndm-openblas":
                        cmd += ["--gemm", "openblas"]
                else:
                    cmd = [py, os.path.abspath(__file__), "--worker", kind, "--folder", info["diffusers_folder"],
                           "--steps", str(steps), "--batch", str(b), "--threads", str(t), "--seed", str(a.seed),
                           "--out", out]
                    if kind in ("ort", "openvino"):
                        cmd += ["--onnx", info["onnx_file"]]
                commands.setdefault(label, fmt_cmd(cmd, env_extra).replace(out, "OUT.npy"))
                rc, so, se, wall, rss = run_measured(cmd, env, a.timeout)
                j = last_json(so) if rc == 0 else None
                run = {"rc": rc, "wall_s": wall, "peak_rss_mib": rss, "out": out}
                if j is None:
                    run["error"] = (se.strip().splitlines() or [f"exit {rc}"])[-1][:300]
                else:
                    tm = j.get("timings", j)
                    run["generate_s"] = tm.get("generate_s", wall)
                    run["load_s"] = tm.get("load_s")
                    run["unet_calls"] = j.get("unet_calls")
                    for key in ("rss_after_import_mib", "rss_after_load_mib", "warmup_s"):
                        if key in j:
                            run[key] = j[key]
                results.setdefault(cfg, {}).setdefault(label, []).append(run)
                msg = (f"[{k}/{total}] {m} steps={steps} batch={b} threads={t} {label:>12s}: "
                       + (f"{run['generate_s']:.3f} s, {run['unet_calls']} calls, peak RSS {rss:.0f} MiB"
                          if "generate_s" in run else f"FAILED ({run['error']})"))
                print(msg, flush=True)

    # ---- image agreement (repeat 0) against the first torch engine ----
    import numpy as np
    ref_label = next((lab for lab, kind, _ in eng_list if kind == "torch"), None)
    for cfg, per in results.items():
        ref = per.get(ref_label, [{}])[0] if ref_label else {}
        refimg = np.load(ref["out"]) if ref.get("generate_s") is not None and os.path.exists(ref["out"]) else None
        for label, runs in per.items():
            r0 = runs[0]
            if refimg is not None and r0.get("generate_s") is not None and os.path.exists(r0["out"]):
                img = np.load(r0["out"])
                r0["max_abs_diff_vs_ref"] = float(np.abs(img.astype(np.float64) - refimg).max()) \
                    if img.shape == refimg.shape else f"shape {img.shape} vs {refimg.shape}"

    # ---- summary ----
    rows = []
    for cfg in configs:
        m, steps, b, t = cfg
        flops = minfo[m]["flops"]["total"]
        tref = None
        for label, _, _ in eng_list:
            runs = [r for r in results[cfg][label] if r.get("generate_s") is not None]
            if label == ref_label and runs:
                tref = statistics.median(r["generate_s"] for r in runs)
        for label, _, _ in eng_list:
            allruns = results[cfg][label]
            runs = [r for r in allruns if r.get("generate_s") is not None]
            row = {"model": m, "steps": steps, "batch": b, "threads": t, "engine": label, "ok": len(runs),
                   "n": len(allruns)}
            if runs:
                ts = [r["generate_s"] for r in runs]
                med = statistics.median(ts)
                calls = runs[0]["unet_calls"] or (steps + 9)
                gf = flops * calls * b / med / 1e9
                pk = peak_for(t)
                row.update({"time_s": med, "min_s": min(ts), "max_s": max(ts), "calls": calls,
                            "images_per_s": b / med, "gflops": gf, "pct_peak": (100 * gf / pk) if pk else None,
                            "rss_mib": statistics.median(r["peak_rss_mib"] for r in runs),
                            "speedup_vs_ref": (tref / med) if tref else None,
                            "diff": allruns[0].get("max_abs_diff_vs_ref"),
                            "rss_after_import_mib": runs[0].get("rss_after_import_mib")})
            else:
                row["error"] = allruns[0].get("error")
            rows.append(row)

    def f(x, spec):
        return "–" if x is None else format(x, spec)

    table = ["| model | steps (UNet calls) | batch | threads | engine | time (s), median [min–max] | images/s | "
             "eff. GFLOP/s | % of FMA peak | peak RSS (MiB) | speed vs " + (ref_label or "torch") + " | max abs image diff vs "
             + (ref_label or "torch") + " |",
             "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        if "time_s" in r:
            d = r["diff"]
            ds = "ref" if r["engine"] == ref_label else (f"{d:.2e}" if isinstance(d, float) else (d or "–"))
            table.append(f"| {r['model']} | {r['steps']} ({r['calls']}) | {r['batch']} | {r['threads']} | {r['engine']} | "
                         f"{r['time_s']:.3f} [{r['min_s']:.3f}–{r['max_s']:.3f}] | {r['images_per_s']:.3f} | "
                         f"{r['gflops']:.1f} | {f(r['pct_peak'], '.0f')} | {r['rss_mib']:.0f} | "
                         f"{f(r['speedup_vs_ref'], '.2f')}× | {ds} |")
        else:
            table.append(f"| {r['model']} | {r['steps']} | {r['batch']} | {r['threads']} | {r['engine']} | "
                         f"failed: {r.get('error', '?')} | | | | | | |")
    print("\n".join(table))

    # ---- report ----
    mi = machine_info()
    now = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    L = []
    peak2 = peak_for(2)
    mid = f"{mi.get('cpu id', '?')} {mi.get('SIMD', '')}".strip()
    title = (f"{mi.get('Model name', '?')} ({mi.get('cpu id', '?')}; {mi.get('SIMD', '')}"
             + (f"; FMA peak {peak2:.0f} GFLOP/s on 2 threads" if peak2 else "") + ")")
    L.append(f"<!-- machine: {mid} -->")
    L.append(f"## {title}" + (" — quick smoke run, not a measurement" if a.quick else ""))
    L.append("")
    L.append(f"Measured {now} with `bench/run_bench.py` (commit {mi['git']}). Regenerate with:")
    L.append("")
    L.append("```sh")
    L.append("python3 bench/make_models.py            # once: random-weight models, FLOP counts, ONNX export")
    L.append(f"python3 bench/{os.path.basename(__file__)} {' '.join(shlex.quote(x) for x in sys.argv[1:])}".rstrip())
    L.append("```")
    L.append("")
    lead = lead_table(rows, configs)
    if lead:
        L.append("### pndm against the fastest peer")
        L.append("")
        L.extend(lead)
        L.append("")
    L.append("### Machine")
    L.append("")
    for key in ("Model name", "CPU(s)", "Core(s) per socket", "Thread(s) per core", "Socket(s)", "CPU max MHz", "BogoMIPS",
                "Hypervisor vendor", "L1d cache", "L2 cache", "L3 cache", "SIMD", "MemTotal", "kernel", "cc", "openblas",
                "openblas_pkgconfig", "load average at start (1, 5, 15 min)"):
        if key in mi:
            L.append(f"- {key}: {mi[key]}")
    L.append("")
    L.append("### Software")
    L.append("")
    if pndm_build:
        flags = ""
        try:
            with open(os.path.join(BUILD, "CMakeCache.txt")) as fh:
                for line in fh:
                    if line.startswith(("CMAKE_C_FLAGS_RELEASE:", "CMAKE_C_COMPILER:")):
                        flags += " " + line.strip()
        except OSError:
            pass
        L.append("- pndm-gen built with `" + " && ".join(" ".join(c) for c in pndm_build).replace(ROOT, ".")
                 + "`" + (f" ({flags.strip()})" if flags else ""))
    for label, v in versions.items():
        if isinstance(v, dict):
            desc = ", ".join(f"{k2} {v[k2]}" for k2 in ("torch", "diffusers", "onnxruntime", "openvino", "numpy", "python")
                             if v.get(k2))
            L.append(f"- {label}: {desc} ({v.get('executable', '')})")
            if v.get("torch_blas"):
                L.append(f"  - torch build: {'; '.join(v['torch_blas'])}")
        else:
            L.append(f"- {label}: {v}")
    L.append("")
    L.append("### Models")
    L.append("")
    for m in models:
        i = minfo[m]
        fl = i["flops"]
        L.append(f"- **{m}**: the architecture of `{i['architecture_of']}` with random weights "
                 f"(`torch.manual_seed({i['seed']})`, diffusers' initialisation), {i['params'] / 1e6:.2f} M parameters, "
                 f"{i['sample_size']}×{i['sample_size']}×{i['in_channels']}. Direct-convolution FLOPs per image per UNet "
                 f"forward: **{fl['total'] / 1e9:.3f} GFLOP** (convolutions {fl['conv'] / 1e9:.3f}, linear "
                 f"{fl['linear'] / 1e9:.4f}, attention matmuls {fl['attention'] / 1e9:.3f}).")
    L.append("")
    L.append("FLOPs = 2 × multiply-accumulates of every convolution, linear layer and attention matmul, counted by "
             "forward hooks (`bench/make_models.py`); norms, activations, softmax and additions are not counted. "
             "Effective GFLOP/s = FLOPs × UNet calls × batch / time. A faster algorithm (e.g. Winograd) can exceed "
             "what this count implies.")
    L.append("")
    L.append("### FMA peak (`bench/fma_peak.c`)")
    L.append("")
    if fma:
        L.append("| ISA | threads | GFLOP/s | per thread |")
        L.append("| --- | ---: | ---: | ---: |")
        for x in fma["results"]:
            L.append(f"| {x['isa']} | {x['threads']} | {x['gflops']:.1f} | {x['gflops_per_thread']:.1f} |")
        L.append("")
        L.append("Independent fp32 FMA chains in registers (16 zmm / 12 ymm), best of repeats; threads not pinned. "
                 "Built and run with:")
        L.append("")
        L.append("```sh")
        L.extend(fma_cmds)
        L.append("```")
    else:
        L.append("not measured (--no-fma)")
    L.append("")
    L.append("### Results")
    L.append("")
    L.append(f"{a.repeats} run(s) per cell, engines interleaved run by run (A B C A B C …), each run a fresh process; "
             "the time is the generation alone (noise + all UNet calls + scheduler steps), model loading excluded; "
             "peak RSS is the whole process's (`wait4` ru_maxrss), median over runs. "
             + ("The celebahq256 row uses "
                f"**{a.big_steps} steps** ({a.big_steps + 9} UNet calls), not 50, to keep the run short; "
                "the time per UNet call is what matters there. " if "celebahq256" in models else "")
             + "Seed 0 for every engine, so the images must agree (last column).")
    L.append("")
    L.extend(table)
    L.append("")
    imp = [r for r in rows if r.get("rss_after_import_mib")]
    if imp:
        after_import = {}
        for r in imp:
            after_import.setdefault(r["engine"], []).append(r["rss_after_import_mib"])
        L.append("Peak RSS of the Python engines includes the interpreter with torch and diffusers imported ("
                 + ", ".join(f"{e} ≈ {statistics.median(v):.0f} MiB" for e, v in sorted(after_import.items()))
                 + ") before any model is loaded; the ONNX Runtime loop imports them too (for PNDMScheduler).")
        L.append("")
    L.append("### Exact commands (from the repository root; one per engine, other rows change -n/-b/-t; "
             "OUT.npy is a temporary file)")
    L.append("")
    L.append("```sh")
    for label, c in commands.items():
        L.append(f"# {label}")
        L.append(c)
    L.append("```")
    L.append("")
    L.append(f"Driver invocation: `{rel(argv_used)}`")
    L.append("")
    L.append(f"<!-- end machine: {mid} -->")
    os.makedirs(os.path.dirname(os.path.abspath(report)), exist_ok=True)
    write_section(report, mid, "\n".join(L))
    allj = {}
    try:
        with open(json_out) as fh:
            allj = json.load(fh)
    except (OSError, ValueError):
        pass
    if not isinstance(allj.get("machines"), dict):  # one entry per machine, as the report's sections
        allj = {"machines": {"earlier run": allj} if allj else {}}
    allj["machines"][mid] = {"machine": mi, "versions": versions, "fma": fma, "models": minfo, "rows": rows,
                             "runs": {f"{c[0]}|{c[1]}|{c[2]}|{c[3]}": v for c, v in results.items()},
                             "commands": commands}
    with open(json_out, "w") as fh:
        json.dump(allj, fh, indent=2, default=str)
    print(f"wrote {report} and {json_out}")
    for fn in os.listdir(tmpdir):
        os.remove(os.path.join(tmpdir, fn))
    os.rmdir(tmpdir)


if __name__ == "__main__":
    main()
