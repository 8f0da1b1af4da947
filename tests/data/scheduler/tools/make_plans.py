# Generates tests/data/scheduler/plans/*.npy from diffusers 0.30.3 PNDMScheduler:
# for every N in 1..T: [ok, num_calls, hash of (t_model, t_idx, prev_idx) per call].
import warnings, sys, os, json; warnings.filterwarnings("ignore")
import numpy as np, torch
from diffusers import PNDMScheduler
M = (1 << 64) - 1
def run(T, sp, skip, off, N):
    s = PNDMScheduler(num_train_timesteps=T, timestep_spacing=sp, skip_prk_steps=skip, steps_offset=off)
    rec = []
    def gps(sample, timestep, prev_timestep, model_output):
        rec.append((int(timestep), int(prev_timestep))); return sample
    s._get_prev_sample = gps
    try:
        s.set_timesteps(N)
        ts = [int(t) for t in s.timesteps]
        x = torch.zeros(1)
        for t in s.timesteps:
            s.step(torch.zeros(1), t, x)
    except Exception:
        return 0, 0, 0
    if len(rec) != len(ts): return 0, 0, 0
    h = 1469598103934665603
    for tm, (ti, pi) in zip(ts, rec):
        if not (0 <= tm < T and 0 <= ti < T and pi < T): return 0, len(ts), 0
        for v in (tm, ti, pi):
            h ^= v & M; h = (h * 1099511628211) & M
    if h >= 1 << 63: h -= 1 << 64
    return 1, len(ts), h
out = sys.argv[1]; os.makedirs(out, exist_ok=True)
cfgs = []
for sp in ["leading", "linspace", "trailing"]:
    for skip in [False, True]:
        cfgs.append((1000, sp, skip, 0)); cfgs.append((999, sp, skip, 0)); cfgs.append((37, sp, skip, 3))
for skip in [False, True]: cfgs.append((1000, "leading", skip, 1))
index = []
for T, sp, skip, off in cfgs:
    name = f"T{T}_{sp}_{'skip' if skip else 'prk'}_off{off}.npy"
    a = np.array([run(T, sp, skip, off, N) for N in range(1, T + 1)], dtype=np.int64)
    np.save(os.path.join(out, name), a)
    index.append({"file": name, "num_train_timesteps": T, "timestep_spacing": sp, "skip_prk_steps": skip, "steps_offset": off,
                  "ok_count": int(a[:, 0].sum())})
    print(name, int(a[:, 0].sum()), flush=True)
json.dump({"generator": "diffusers 0.30.3 PNDMScheduler, torch 1.13; per N in 1..T: [ok, num_calls, fnv hash of (t_model, t_idx, prev_idx) per call]; ok=0: diffusers raised or used a timestep/index outside [0,T) (prev<0 selects final_alpha_cumprod)", "hash": "h=1469598103934665603; for each call, for v in (t_model, t_idx, prev_idx): h ^= v mod 2^64; h = h*1099511628211 mod 2^64; stored as int64", "cases": index}, open(os.path.join(out, "index.json"), "w"), indent=1)
