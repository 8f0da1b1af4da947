#!/usr/bin/env python3
"""Make the quality tables of weights/README.md: samples from pndm-gen (and a 1000-step DDPM
reference through diffusers) scored by tools/fid.py against the Fashion-MNIST test set.

  /usr/bin/python3 tools/fid_table.py --model weights/fashion_mnist.safetensors \
      --pndm-gen build/pndm-gen -n 1000 [--ddpm] [--out build/fid]

  # the PNDM paper's comparison: every sampler at 10/20/50/100/250 steps, PF, DDPM 1000
  nice -n 10 python3 tools/fid_table.py --samplers [--out build/fid_samplers] [--cells NAME_nSTEPS,...]
  python3 tools/fid_table.py --samplers --report [--plot docs/samplers.png]

--samplers runs one cell (sampler, steps) per folder OUT/<sampler>_n<steps>/ (samples.npy,
gen.json = pndm-gen --json + wall time, score.json) and skips cells whose score.json exists, so
an interrupted run resumes where it stopped; --cells a,b limits it to some cells, --report
prints the table (and --plot draws FD against model calls) from the cells done so far. Each
scored cell is also written to the committed record weights/fid_samplers.json (--record): the
report takes a cell from its folder, else from the record, so the table and the plot can be
redrawn from the repository alone and a cell is never run twice across machines.

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


# ---- the PNDM paper's comparison (--samplers) ---------------------------------------------------

PAPER_STEPS = [10, 20, 50, 100, 250]
# (row label, pndm-gen --sampler, extra arguments); order = cheapest cells first when running
SAMPLER_ROWS = [
    ("DDIM (paper)", "ddim-paper", []),
    ("S-PNDM", "s-pndm", []),
    ("F-PNDM", "f-pndm", []),
    ("FON", "fon", []),
    ("DDIM (diffusers, eta 0)", "ddim", []),
    ("PNDM (diffusers)", "pndm", []),
]


def sampler_cells():
    """Every cell as (label, sampler, steps, extra args): the cheap counts first, then the cells
    the paper's claims need (DDIM at 250, S-/F-PNDM at 100), PF, the rest, DDPM 1000 last."""
    cells = []
    for steps in PAPER_STEPS[:3]:
        cells += [(label, name, steps, extra) for label, name, extra in SAMPLER_ROWS]
    first = [("DDIM (paper)", "ddim-paper", 250)] + [(label, name, 100) for label, name, _ in SAMPLER_ROWS[:3]]
    cells += [(label, name, steps, []) for label, name, steps in first]
    cells.append(("PF (adaptive RK45)", "pf", 50, []))
    for steps in PAPER_STEPS[3:]:
        cells += [(label, name, steps, extra) for label, name, extra in SAMPLER_ROWS
                  if (label, name, steps) not in first]
    cells.append(("DDPM (diffusers, ancestral)", "ddpm", 1000, []))
    return cells


def cell_dir(args, name, steps):
    return os.path.join(args.out, f"{name}_n{steps}")


def run_cell(args, label, name, steps, extra):
    d = cell_dir(args, name, steps)
    recorded = f"{name}_n{steps}" in read_record(args)["cells"]
    if os.path.exists(os.path.join(d, "score.json")):
        if not recorded:  # scored before the record existed
            with open(os.path.join(d, "gen.json")) as f, open(os.path.join(d, "score.json")) as g:
                add_to_record(args, name, steps, json.load(f), json.load(g))
        return
    if recorded:
        return  # scored before (maybe on another machine): the record has it
    os.makedirs(d, exist_ok=True)
    samples = os.path.join(d, "samples.npy")
    gen = os.path.join(d, "gen.json")
    if not os.path.exists(gen):
        cmd = [args.pndm_gen, "-m", args.model, "--sampler", name, "-n", str(steps), "-b", str(args.n), "-s",
               str(args.seed), "-t", str(args.threads), "-q", "--json", "-o", samples] + extra
        t0 = time.time()
        res = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        res["wall_s"] = time.time() - t0
        res["command"] = " ".join(os.path.relpath(c) if os.path.exists(c) else c for c in cmd)
        with open(gen + ".tmp", "w") as f:
            json.dump(res, f, indent=1)
        os.replace(gen + ".tmp", gen)  # the cell's samples are complete once gen.json exists
    sc = fid_score(samples, args.threads)
    with open(os.path.join(d, "score.json.tmp"), "w") as f:
        json.dump(sc, f, indent=1)
    os.replace(os.path.join(d, "score.json.tmp"), os.path.join(d, "score.json"))
    with open(gen) as f:
        add_to_record(args, name, steps, json.load(f), sc)
    print(f"{label} {steps}: FD {sc['fid']:.2f}", file=sys.stderr, flush=True)


def read_record(args):
    """The committed record of every cell scored so far (--record): {"cells": {"NAME_nSTEPS": {...}}},
    read once per run (add_to_record keeps it current)."""
    if getattr(args, "_record", None) is None:
        try:
            with open(args.record) as f:
                args._record = json.load(f)
        except FileNotFoundError:
            args._record = {"cells": {}}
        args._record.setdefault("cells", {})
    return args._record


def add_to_record(args, name, steps, gen, sc):
    rec = read_record(args)
    rec["cells"][f"{name}_n{steps}"] = {
        "sampler": name, "steps": steps, "unet_calls": gen["unet_calls"], "fid": sc["fid"],
        "classes_covered": sc.get("classes_covered"), "entropy_bits": sc.get("entropy_bits"),
        "wall_s": round(gen.get("wall_s", 0), 1), "command": gen.get("command", ""),
        "date": time.strftime("%Y-%m-%d", time.gmtime()), "cpu": cpu_model()}
    rec["cells"] = dict(sorted(rec["cells"].items()))
    with open(args.record + ".tmp", "w") as f:
        json.dump(rec, f, indent=1)
        f.write("\n")
    os.replace(args.record + ".tmp", args.record)


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def load_cell(args, name, steps):
    """(gen, score) of a cell: its folder under --out, else its entry in the --record file."""
    d = cell_dir(args, name, steps)
    try:
        with open(os.path.join(d, "gen.json")) as f:
            gen = json.load(f)
        with open(os.path.join(d, "score.json")) as f:
            sc = json.load(f)
    except OSError:
        c = read_record(args)["cells"].get(f"{name}_n{steps}")
        if c is None:
            return None
        return {"unet_calls": c["unet_calls"]}, {"fid": c["fid"]}
    return gen, sc


def report_samplers(args):
    head = "| method | " + " | ".join(f"{s} steps" for s in PAPER_STEPS) + " |"
    print("FD (lower is better; UNet calls in parentheses), 1,000 samples per cell:\n")
    print(head)
    print("| --- |" + " ---: |" * len(PAPER_STEPS))
    series = []
    for label, name, _ in SAMPLER_ROWS:
        row, pts = [], []
        for steps in PAPER_STEPS:
            c = load_cell(args, name, steps)
            if c is None:
                row.append("")
                continue
            gen, sc = c
            row.append(f"{sc['fid']:.2f} ({gen['unet_calls']})")
            pts.append((gen["unet_calls"], sc["fid"]))
        print(f"| {label} | " + " | ".join(row) + " |")
        series.append((label, pts))
    for label, name, steps in [("PF (adaptive RK45, rtol = atol = 1e-5)", "pf", 50),
                               ("DDPM (diffusers, ancestral)", "ddpm", 1000)]:
        c = load_cell(args, name, steps)
        txt = f"{c[1]['fid']:.2f} ({c[0]['unet_calls']} UNet calls)" if c else "not run"
        print(f"\n{label}: FD {txt}", end="")
        if c:
            series.append((label, [(c[0]["unet_calls"], c[1]["fid"])]))
    done = [(n, st) for _, n, st, _ in sampler_cells() if load_cell(args, n, st)]
    todo = [f"{n}_n{st}" for _, n, st, _ in sampler_cells() if not load_cell(args, n, st)]
    print(f"\n\nCells done: {len(done)} of {len(sampler_cells())}" + (f"; not yet: {', '.join(todo)}" if todo else ""))
    print("Each cell: `pndm-gen --sampler NAME -n STEPS -b %d -s %d -t %d -o samples.npy` (one generator for the "
          "batch), scored with `tools/fid.py score samples.npy`." % (args.n, args.seed, args.threads))
    # the paper's claims, where the cells exist
    fd = {}
    for _, n, st, _ in sampler_cells():
        c = load_cell(args, n, st)
        if c:
            fd[(n, st)] = c[1]["fid"]
    claims = []
    if ("f-pndm", 50) in fd and ("ddim-paper", 250) in fd:
        a, b = fd[("f-pndm", 50)], fd[("ddim-paper", 250)]
        claims.append(f"F-PNDM at 50 steps ({a:.2f}) {'better' if a < b else 'not better'} than DDIM (paper) at 250 "
                      f"({b:.2f})")
    for m in ("s-pndm", "f-pndm"):
        for base in ("ddim-paper", "ddim"):
            pairs = [(st, fd[(m, st)], fd[(base, st)]) for st in PAPER_STEPS if (m, st) in fd and (base, st) in fd]
            if pairs:
                wins = sum(a < b for _, a, b in pairs)
                claims.append(f"{m} ahead of {base} at {wins} of {len(pairs)} counts: " +
                              ", ".join(f"{st}: {a:.2f} vs {b:.2f}" for st, a, b in pairs))
    if claims:
        print("\nThe paper's ordering on this model:\n- " + "\n- ".join(claims))
    if args.plot:
        plot(series, args.plot)


def plot(series, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=110)
    markers = "osD^v<>px"
    for i, (label, pts) in enumerate(series):
        if not pts:
            continue
        xs, ys = zip(*sorted(pts))
        ax.plot(xs, ys, marker=markers[i % len(markers)], linestyle="-" if len(pts) > 1 else "none", label=label)
    ax.set_xscale("log")
    ax.set_xlabel("UNet calls per sample (log scale)")
    ax.set_ylabel("FD (tools/fid.py, 1,000 samples; lower is better)")
    ax.set_title("Samplers on the bundled Fashion-MNIST model (pndm-gen)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    print(f"wrote {path}", file=sys.stderr)


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
    ap.add_argument("--out", default=None, help="output folder (build/fid; --samplers: build/fid_samplers)")
    ap.add_argument("--samplers", action="store_true", help="the PNDM paper's comparison (see above)")
    ap.add_argument("--cells", default="", help="with --samplers: only these cells, e.g. f-pndm_n50,pf_n50")
    ap.add_argument("--report", action="store_true", help="with --samplers: print the table of the cells done")
    ap.add_argument("--plot", default="", help="with --samplers --report: draw FD against UNet calls here")
    ap.add_argument("--record", default=os.path.join(HERE, "..", "weights", "fid_samplers.json"),
                    help="with --samplers: every scored cell is added to this record (committed), and --report "
                         "uses it for cells whose folder is not under --out (default weights/fid_samplers.json)")
    args = ap.parse_args()
    if args.out is None:
        args.out = "build/fid_samplers" if args.samplers else "build/fid"
    if args.samplers:
        os.makedirs(args.out, exist_ok=True)
        if not args.report:
            want = set(c for c in args.cells.split(",") if c)
            for label, name, steps, extra in sampler_cells():
                if want and f"{name}_n{steps}" not in want:
                    continue
                run_cell(args, label, name, steps, extra)
        report_samplers(args)
        return
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
