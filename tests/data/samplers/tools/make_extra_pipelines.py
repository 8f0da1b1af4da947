# Extra whole-run cases on the tiny UNet (tests/data/samplers/extra_pipeline/<case>/), made like
# ../pipeline: the reference code with diffusers' UNet2DModel (torch 1.13, float32, 1 thread) —
# the PNDM paper's Runner.sample_image loop / PF solve_ivp call with model(x, t) = unet(x, t).sample,
# and diffusers 0.30.3's DDIM/DDPM pipeline loops (randn_tensor, set_timesteps, unet, step) —
# plus the float64-UNet run whose deviation sets the tolerance (10x the measured float64 vs
# float32 difference, at least 1e-5 of the latents' absmax; images 1e-3 or 10x measured).
#
#   /work/venv-ref/bin/python tests/data/samplers/tools/make_extra_pipelines.py /tmp/pndm_ref tests/data/samplers
import copy, json, os, sys, types, warnings
warnings.filterwarnings("ignore")
import numpy as np
import torch as th
import safetensors.torch  # noqa: F401
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel
from diffusers.utils.torch_utils import randn_tensor
from scipy import integrate

th.set_num_threads(1)
sys.path.insert(0, sys.argv[1])
from runner.schedule import Schedule  # noqa: E402

ROOT = sys.argv[2]
OUT = os.path.join(ROOT, "extra_pipeline")
UNET32 = UNet2DModel.from_pretrained(os.path.join(ROOT, "models", "unet_tiny")).eval()
UNET64 = copy.deepcopy(UNET32).double()


def learned_unet():
    """A tiny UNet with 2 * 3 output channels (eps and the variance) for DDPM's learned
    variance types: seeded, every parameter perturbed by 0.05 N(0, 1) as unet_tiny."""
    d = os.path.join(ROOT, "models", "unet_tiny_learned")
    if not os.path.exists(os.path.join(d, "config.json")):
        th.manual_seed(0)
        u = UNet2DModel(sample_size=16, in_channels=3, out_channels=6, block_out_channels=(16, 32),
                        down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
                        layers_per_block=1, norm_num_groups=8, attention_head_dim=8)
        g = th.Generator().manual_seed(1)
        with th.no_grad():
            for p in u.parameters():
                p.add_(0.05 * th.randn(p.shape, generator=g))
        u.save_pretrained(d, safe_serialization=True)
    return UNet2DModel.from_pretrained(d).eval()
PAPER_TYPE = {"linear": "linear", "scaled_linear": "quad", "squaredcos_cap_v2": "cosine"}


def run_paper(method, cfgd, n, B, seed, per_image, unet, dtype):
    sch = {"type": PAPER_TYPE[cfgd.get("beta_schedule", "linear")], "diffusion_step": cfgd.get("num_train_timesteps", 1000),
           "beta_start": cfgd.get("beta_start", 0.0001), "beta_end": cfgd.get("beta_end", 0.02)}
    schedule = Schedule(types.SimpleNamespace(device="cpu", method=method), sch)
    C, S = unet.config.in_channels, unet.config.sample_size
    if per_image:  # pndm's contract: the noise diffusers' generator list draws
        noise = th.cat([th.randn((1, C, S, S), generator=th.Generator().manual_seed(seed + i)) for i in range(B)])
    else:          # torch.manual_seed(seed); torch.randn((B, C, H, W))
        th.manual_seed(seed)
        noise = th.randn((B, C, S, S))
    times = []

    def model(x, t):
        times.append(t.numpy().astype(np.float32).copy())
        return unet(x.to(dtype), t.to(dtype)).sample.to(th.float32)

    T = sch["diffusion_step"]
    with th.no_grad():
        if method == "PF":
            tol = 1e-5 if n > 1 else n
            shape = noise.shape

            def drift_func(t, x):
                x = th.from_numpy(x.reshape(shape)).type(th.float32)
                return schedule.denoising(x, None, t, model, pflow=True).numpy().reshape((-1,))

            sol = integrate.solve_ivp(drift_func, (1, 1e-3), noise.numpy().reshape((-1,)), rtol=tol, atol=tol,
                                      method="RK45")
            lat = th.tensor(sol.y[:, -1]).reshape(shape).type(th.float32)
            extra = {"nfev": int(sol.nfev), "accepted_steps": len(sol.t) - 1}
        else:
            skip = T // n
            seq = range(0, T, skip)
            seq_next = [-1] + list(seq[:-1])
            img, start = noise, True
            for i, j in zip(reversed(seq), reversed(seq_next)):
                img = schedule.denoising(img, th.ones(B) * j, th.ones(B) * i, model, start, False)
                start = False
            lat, extra = img, {}
    return noise.numpy(), lat.numpy(), np.stack(times), extra


def run_diffusers(cls, cfgd, n, B, seed, per_image, eta, unet, dtype):
    s = cls.from_config(cfgd)
    C, S = unet.config.in_channels, unet.config.sample_size
    g = [th.Generator().manual_seed(seed + i) for i in range(B)] if per_image else th.Generator().manual_seed(seed)
    x = randn_tensor((B, C, S, S), generator=g)
    noise = x.numpy().copy()
    s.set_timesteps(n)
    with th.no_grad():
        for t in s.timesteps:
            mo = unet(x.to(dtype), t).sample.to(th.float32)
            if cls is DDIMScheduler:
                x = s.step(mo, t, x, eta=eta, use_clipped_model_output=None, generator=g).prev_sample
            else:
                x = s.step(mo, t, x, generator=g).prev_sample
    return noise, x.numpy(), s.timesteps.numpy().astype(np.int64), {}


def case(name, sampler, cfgd, n, B, seed, per_image=False, eta=None, unets=None):
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    paper = sampler in ("ddim-paper", "s-pndm", "f-pndm", "fon", "pf")
    method = {"ddim-paper": "DDIM", "s-pndm": "S-PNDM", "f-pndm": "F-PNDM", "fon": "FON", "pf": "PF"}.get(sampler)
    runs = []
    for unet, dtype in unets or ((UNET32, th.float32), (UNET64, th.float64)):
        if paper:
            runs.append(run_paper(method, cfgd, n, B, seed, per_image, unet, dtype))
        else:
            cls = DDIMScheduler if sampler == "ddim" else DDPMScheduler
            runs.append(run_diffusers(cls, cfgd, n, B, seed, per_image, eta or 0.0, unet, dtype))
    (noise, lat, times, extra), (_, lat64, _, _) = runs
    img = np.clip(lat / 2 + 0.5, 0, 1).transpose(0, 2, 3, 1)
    img64 = np.clip(lat64 / 2 + 0.5, 0, 1).transpose(0, 2, 3, 1)
    amax = float(np.abs(lat).max())
    dev = float(np.abs(lat - lat64).max()) / amax
    dimg = float(np.abs(img - img64).max())
    cli = ["--sampler", sampler, "-n", str(n), "-b", str(B), "-s", str(seed)]
    if per_image:
        cli.append("--per-image-seeds")
    if eta is not None:
        cli += ["--eta", str(eta)]
    cli += ["--scheduler-config", "scheduler_config.json"]
    with open(os.path.join(d, "scheduler_config.json"), "w") as f:
        json.dump(cfgd, f, indent=1)
    man = {"case": name, "kind": "pipeline", "sampler": sampler, "model": "unet_tiny_learned" if unets else "unet_tiny", "steps": n, "batch": B, "seed": seed,
           "per_image_seeds": per_image, "cli": cli, "solver": extra,
           "measured": {"float64_unet_vs_float32": {"final_latents_rel": dev, "images_max_abs": dimg}},
           "latents_absmax": amax,
           "tolerance": {"final_latents_rel": max(1e-5, float("%.1g" % (10 * dev + 5e-16))),
                         "images_abs": max(1e-3, float("%.1g" % (10 * dimg + 5e-16)))}}
    with open(os.path.join(d, "manifest.json"), "w") as f:
        json.dump(man, f, indent=1)
    np.save(os.path.join(d, "init_noise.npy"), noise.astype(np.float32))
    np.save(os.path.join(d, "final_latents.npy"), lat.astype(np.float32))
    np.save(os.path.join(d, "images.npy"), img.astype(np.float32))
    np.save(os.path.join(d, "timesteps.npy"), times)
    print(name, "calls", len(times), "dev %.2g" % dev, "tol", man["tolerance"], extra, flush=True)


PNDM_CFG = {"_class_name": "PNDMScheduler", "beta_schedule": "linear", "beta_start": 0.0001, "beta_end": 0.02,
            "num_train_timesteps": 1000}
case("pf_n50_b2", "pf", PNDM_CFG, 50, 2, 301)
case("fon_cosine_n20_b2_list", "fon", dict(PNDM_CFG, beta_schedule="squaredcos_cap_v2"), 20, 2, 302, per_image=True)
case("ddim_paper_quad_n25_b3", "ddim-paper", dict(PNDM_CFG, beta_schedule="scaled_linear", beta_start=0.00085,
                                                  beta_end=0.012), 25, 3, 303)
case("fpndm_n12_b1", "f-pndm", PNDM_CFG, 12, 1, 304)
case("spndm_T500_n40_b2", "s-pndm", dict(PNDM_CFG, num_train_timesteps=500, beta_end=0.04), 40, 2, 305)
case("ddim_eta0_noclip_vpred_n15_b2", "ddim", {"_class_name": "DDIMScheduler", "clip_sample": False,
                                                "prediction_type": "v_prediction", "timestep_spacing": "trailing"},
     15, 2, 306, eta=0.0)
case("ddim_eta05_thresh_n10_b2_list", "ddim", {"_class_name": "DDIMScheduler", "thresholding": True,
                                                "sample_max_value": 2.0, "steps_offset": 1}, 10, 2, 307,
     per_image=True, eta=0.5)
case("ddpm_small_log_n30_b2", "ddpm", {"_class_name": "DDPMScheduler", "variance_type": "fixed_small_log"}, 30, 2,
     308)

L32 = learned_unet()
L64 = copy.deepcopy(L32).double()
# ("learned" takes the square root of the raw variance output, NaN for this random model)
case("ddpm_learned_range_n20_b2_list", "ddpm", {"_class_name": "DDPMScheduler", "variance_type": "learned_range"}, 20,
     2, 309, per_image=True, unets=((L32, th.float32), (L64, th.float64)))
