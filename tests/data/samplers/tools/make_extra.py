# Extra per-step traces for the samplers (tests/data/samplers/extra/<case>/), made by the
# reference code itself with the same dummy model and file layout as ../traces (README.md):
# the PNDM paper's code (luping-liu/PNDM @ e771949, runner/schedule.py + runner/method.py,
# its Runner.sample_image loop and PF solve_ivp call) and diffusers 0.30.3's DDIMScheduler /
# DDPMScheduler stepped as their pipelines do. They cover options, schedules and step counts the
# public set does not (odd skips, 1-3 steps, quad/cosine, T = 500, v/sample prediction,
# trailing/linspace, thresholding, use_clipped_model_output, rescale_betas_zero_snr, every DDPM
# variance type, sigmoid betas).
#
#   git -C <PNDM checkout> show e771949:runner/schedule.py > /tmp/pndm_ref/runner/schedule.py  (and method.py)
#   /work/venv-ref/bin/python tests/data/samplers/tools/make_extra.py /tmp/pndm_ref tests/data/samplers/extra
import json, math, os, sys, types, warnings
warnings.filterwarnings("ignore")
import numpy as np
import torch as th
import safetensors.torch  # noqa: F401  (before diffusers, as the golden set did)
from diffusers import DDIMScheduler, DDPMScheduler
from diffusers.utils.torch_utils import randn_tensor
from scipy import integrate

th.set_num_threads(1)
sys.path.insert(0, sys.argv[1])
from runner.schedule import Schedule  # noqa: E402

OUT = sys.argv[2]
SHAPE = (2, 3, 8, 8)


def eps_np(x, t):
    """The golden dummy model: IEEE double, math module, left to right, then float32."""
    out = np.empty(x.shape, dtype=np.float32)
    xs, ts = x.reshape(x.shape[0], -1), np.asarray(t, dtype=np.float32).reshape(-1)
    o = out.reshape(x.shape[0], -1)
    for b in range(x.shape[0]):
        a = abs(float(ts[b] if ts.size > 1 else ts[0]))
        ab = math.exp(-(1e-4 * a + 0.5 * (0.02 - 1e-4) * a * a / 1000.0))
        c = math.sqrt(1.0 - ab) / (0.16 * ab + 1.0 - ab)
        for i, v in enumerate(xs[b].astype(np.float64).tolist()):
            o[b, i] = c * v + 0.1 * math.sin(v + a / 100.0) + 0.05 * v * math.cos(a / 200.0)
    return out


def var_np(x, t, kind):
    """The second half of a learned-variance output: learned: 0.01 + 0.01 cos(x)^2 (> 0);
    learned_range: 0.9 sin(3 x + a / 300) (in [-1, 1]); double, then float32."""
    a = abs(float(t))
    xs = x.astype(np.float64)
    if kind == "learned":
        return np.array([0.01 + 0.01 * math.cos(v) ** 2 for v in xs.ravel().tolist()]).reshape(x.shape).astype(
            np.float32)
    return np.array([0.9 * math.sin(3.0 * v + a / 300.0) for v in xs.ravel().tolist()]).reshape(x.shape).astype(
        np.float32)


def model_out(x, t, variance):
    e = eps_np(x.numpy(), [float(t)] * x.shape[0])
    if variance in ("learned", "learned_range"):
        v = var_np(x.numpy(), float(t), variance)
        e = np.concatenate([e, v], axis=1)
    return th.from_numpy(e)


def keep_steps(n):
    if n <= 200:
        return list(range(n))
    return sorted(set(list(range(10)) + list(range(0, n, 25)) + [n - 1]))


def tol(bit_exact, rel=1e-5, why=""):
    return {"bit_exact": bit_exact, "per_step_rel": rel, "why": why}


def save(d, **arrays):
    os.makedirs(d, exist_ok=True)
    for k, v in arrays.items():
        np.save(os.path.join(d, k + ".npy"), v)


# ---- the paper's methods ---------------------------------------------------------------------

def paper_case(name, method, sampler, sched, n, seed):
    d = os.path.join(OUT, name)
    cfg = dict(sched)
    schedule = Schedule(types.SimpleNamespace(device="cpu", method=method), cfg)
    T = cfg["diffusion_step"]
    x_T = th.randn(SHAPE, generator=th.Generator().manual_seed(seed))
    model_t = []

    def model(x, t):
        model_t.append(t.numpy().astype(np.float32).copy())
        return th.from_numpy(eps_np(x.numpy(), t.numpy()))

    man = {"case": name, "kind": "trace", "reference": "paper", "method": method, "sampler": sampler,
           "schedule": {k: v for k, v in cfg.items() if k != "type"} | {"type": cfg["type"]},
           "sample_speed": n, "shape": list(SHAPE), "seed": seed}
    with th.no_grad():
        if method == "PF":
            tol_ = 1e-5 if n > 1 else n

            def drift_func(t, x):
                x = th.from_numpy(x.reshape(SHAPE)).type(th.float32)
                return schedule.denoising(x, None, t, model, pflow=True).numpy().reshape((-1,))

            sol = integrate.solve_ivp(drift_func, (1, 1e-3), x_T.numpy().reshape((-1,)), rtol=tol_, atol=tol_,
                                      method="RK45")
            final = th.tensor(sol.y[:, -1]).reshape(SHAPE).type(th.float32).numpy()
            acc = len(sol.t) - 1
            man["solver"] = {"nfev": int(sol.nfev), "accepted_steps": acc,
                             "rejected_steps": int((sol.nfev - 2) // 6 - acc), "status": int(sol.status)}
            man["tolerance"] = tol(False, 7e-5) | {"final_rel": 1e-5}
            save(d, x_T=x_T.numpy(), betas=schedule.betas.numpy(), alphas_cump=schedule.alphas_cump.numpy(),
                 final=final, model_t=np.stack(model_t), solver_t=sol.t.astype(np.float64),
                 solver_y=sol.y.T.astype(np.float64).copy())
        else:
            skip = T // n
            seq = range(0, T, skip)
            seq_next = [-1] + list(seq[:-1])
            img, samples, start = x_T, [], True
            for i, j in zip(reversed(seq), reversed(seq_next)):
                t = th.ones(SHAPE[0]) * i
                t_next = th.ones(SHAPE[0]) * j
                img = schedule.denoising(img, t_next, t, model, start, False)
                start = False
                samples.append(img.numpy().copy())
            keep = keep_steps(len(samples))
            man["num_steps"] = len(samples)
            man["tolerance"] = tol(True)
            save(d, x_T=x_T.numpy(), betas=schedule.betas.numpy(), alphas_cump=schedule.alphas_cump.numpy(),
                 final=samples[-1], model_t=np.stack(model_t), sample_indices=np.array(keep, dtype=np.int64),
                 samples=np.stack([samples[k] for k in keep]))
    with open(os.path.join(d, "manifest.json"), "w") as f:
        json.dump(man, f, indent=1)
    print(name, len(model_t), "calls", flush=True)


# ---- diffusers DDIM / DDPM -------------------------------------------------------------------

def diffusers_case(name, cls, kw, n, seeds, eta=None, clipped=False, bit_exact=True, rel=1e-5):
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    s = cls(**kw)
    s.save_config(d)
    s = cls.from_config(cls.load_config(d))
    gens = [th.Generator().manual_seed(x) for x in seeds]
    g = gens if len(gens) > 1 else gens[0]
    x = randn_tensor(SHAPE, generator=g)
    x_T = x.numpy().copy()
    s.set_timesteps(n)
    variance = kw.get("variance_type", "fixed_small") if cls is DDPMScheduler else None
    samples = []
    with th.no_grad():
        for t in s.timesteps:
            mo = model_out(x, int(t), variance)
            if cls is DDIMScheduler:
                x = s.step(mo, t, x, eta=eta, use_clipped_model_output=clipped, generator=g).prev_sample
            else:
                x = s.step(mo, t, x, generator=g).prev_sample
            samples.append(x.numpy().copy())
    keep = keep_steps(len(samples))
    man = {"case": name, "kind": "trace", "reference": "diffusers", "scheduler": cls.__name__,
           "sampler": "ddim" if cls is DDIMScheduler else "ddpm", "config_overrides": kw,
           "num_inference_steps": n, "eta": eta, "use_clipped_model_output": clipped,
           "generator": {"kind": "list" if len(seeds) > 1 else "single", "seeds": seeds},
           "shape": list(SHAPE), "model_variance": variance, "tolerance": tol(bit_exact, rel)}
    with open(os.path.join(d, "manifest.json"), "w") as f:
        json.dump(man, f, indent=1)
    save(d, x_T=x_T, betas=s.betas.numpy(), alphas_cumprod=s.alphas_cumprod.numpy(),
         timesteps=s.timesteps.numpy().astype(np.int64), final=samples[-1],
         sample_indices=np.array(keep, dtype=np.int64), samples=np.stack([samples[k] for k in keep]))
    print(name, len(samples), "steps", flush=True)


LIN = {"type": "linear", "diffusion_step": 1000, "beta_start": 0.0001, "beta_end": 0.02}
QUAD = {"type": "quad", "diffusion_step": 1000, "beta_start": 0.0001, "beta_end": 0.02}
COS = {"type": "cosine", "diffusion_step": 1000}
LIN500 = {"type": "linear", "diffusion_step": 500, "beta_start": 0.0002, "beta_end": 0.04}

paper_case("paper_ddim_quad_n30", "DDIM", "ddim-paper", QUAD, 30, 21)
paper_case("paper_ddim_cosine_n250", "DDIM", "ddim-paper", COS, 250, 22)
paper_case("paper_spndm_cosine_n12", "S-PNDM", "s-pndm", COS, 12, 23)
paper_case("paper_spndm_linear_n1", "S-PNDM", "s-pndm", LIN, 1, 24)
paper_case("paper_fpndm_linear_n12", "F-PNDM", "f-pndm", LIN, 12, 25)
paper_case("paper_fpndm_linear_n1", "F-PNDM", "f-pndm", LIN, 1, 26)
paper_case("paper_fpndm_quad_n2", "F-PNDM", "f-pndm", QUAD, 2, 27)
paper_case("paper_fpndm_T500_n25", "F-PNDM", "f-pndm", LIN500, 25, 28)
paper_case("paper_fon_linear_n7", "FON", "fon", LIN, 7, 29)
paper_case("paper_fon_quad_n15", "FON", "fon", QUAD, 15, 30)
paper_case("paper_pf_quad", "PF", "pf", QUAD, 50, 31)
paper_case("paper_pf_linear_n1", "PF", "pf", LIN, 1, 32)

diffusers_case("ddim_vpred_trailing_eta05_n10_list", DDIMScheduler,
               dict(prediction_type="v_prediction", timestep_spacing="trailing"), 10, [41, 42], eta=0.5)
diffusers_case("ddim_sample_linspace_clip2_clipped_n12", DDIMScheduler,
               dict(prediction_type="sample", timestep_spacing="linspace", clip_sample_range=2.0), 12, [43], eta=1.0,
               clipped=True)
diffusers_case("ddim_threshold_offset1_noone_eta03_n25", DDIMScheduler,
               dict(thresholding=True, dynamic_thresholding_ratio=0.9, sample_max_value=1.5, steps_offset=1,
                    set_alpha_to_one=False), 25, [44], eta=0.3)
diffusers_case("ddim_zero_snr_vpred_trailing_n8", DDIMScheduler,
               dict(rescale_betas_zero_snr=True, prediction_type="v_prediction", timestep_spacing="trailing",
                    beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012), 8, [45], eta=0.0)
diffusers_case("ddim_squaredcos_noclip_n50", DDIMScheduler, dict(beta_schedule="squaredcos_cap_v2", clip_sample=False),
               50, [46], eta=0.0)
diffusers_case("ddpm_fixed_small_log_n50", DDPMScheduler, dict(variance_type="fixed_small_log"), 50, [47],
               bit_exact=False)
diffusers_case("ddpm_fixed_large_vpred_n30_list", DDPMScheduler,
               dict(variance_type="fixed_large", prediction_type="v_prediction", clip_sample=False), 30, [48, 49])
diffusers_case("ddpm_learned_n20", DDPMScheduler, dict(variance_type="learned"), 20, [50])
diffusers_case("ddpm_learned_range_n20_list", DDPMScheduler, dict(variance_type="learned_range"), 20, [51, 52],
               bit_exact=False)
diffusers_case("ddpm_sigmoid_sample_n25", DDPMScheduler,
               dict(beta_schedule="sigmoid", prediction_type="sample", thresholding=True), 25, [53], bit_exact=False)
diffusers_case("ddpm_T500_linspace_zero_snr_n40", DDPMScheduler,
               dict(num_train_timesteps=500, timestep_spacing="linspace", rescale_betas_zero_snr=True,
                    prediction_type="v_prediction"), 40, [54])
