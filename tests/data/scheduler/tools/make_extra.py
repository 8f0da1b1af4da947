# Extra PNDMScheduler traces (diffusers 0.30.3, torch 1.13) for option combinations the shared
# golden set does not cover; same layout and stand-in model f(x,t) as tests/data/scheduler/<case>.
import warnings, sys, os, json, math; warnings.filterwarnings("ignore")
import numpy as np, torch
from diffusers import PNDMScheduler
torch.set_num_threads(1)
out = sys.argv[1]

def f(x, t):
    td = float(t)
    ab = math.exp(-(1e-4*td + 0.5*(0.02-1e-4)*td*td/1000.0))
    c = math.sqrt(1.0 - ab) / (0.16*ab + 1.0 - ab)
    xs = x.numpy().astype(np.float64).ravel()
    o = np.array([c*v + 0.1*math.sin(v + td/100.0) for v in xs.tolist()], dtype=np.float64)
    return torch.from_numpy(o.astype(np.float32).reshape(x.shape))

rng = np.random.RandomState(7)
tb50 = (np.linspace(0.001**0.5, 0.05**0.5, 50)**2 * (1 + 0.1*rng.rand(50))).tolist()
cases = {
  "x_squaredcos_skip_trailing": (dict(beta_schedule="squaredcos_cap_v2", skip_prk_steps=True, timestep_spacing="trailing"), [10, 25], (2, 3, 4, 4)),
  "x_vpred_skip_linspace_one": (dict(prediction_type="v_prediction", skip_prk_steps=True, timestep_spacing="linspace", set_alpha_to_one=True), [1, 2, 3, 7], (2, 3, 4, 4)),
  "x_prk_tiny_and_dense": (dict(), [4, 5, 501], (1, 1, 4, 4)),
  "x_trained_betas_T50": (dict(num_train_timesteps=50, trained_betas=tb50, steps_offset=2, prediction_type="v_prediction"), [4, 10, 16], (2, 3, 4, 4)),
  "x_scaled_trailing_one": (dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, timestep_spacing="trailing", set_alpha_to_one=True), [10, 33], (2, 3, 4, 4)),
  "x_T999_offset5_skip": (dict(num_train_timesteps=999, steps_offset=5, skip_prk_steps=True, beta_start=0.0002, beta_end=0.03), [7, 50], (2, 3, 4, 4)),
}
for name, (kw, runs, shape) in cases.items():
    d = os.path.join(out, name); os.makedirs(d, exist_ok=True)
    s = PNDMScheduler(**kw)
    s.save_config(d)
    x0 = torch.randn(shape, generator=torch.Generator().manual_seed(99))
    np.save(os.path.join(d, "x0.npy"), x0.numpy())
    np.save(os.path.join(d, "betas.npy"), s.betas.numpy())
    np.save(os.path.join(d, "alphas_cumprod.npy"), s.alphas_cumprod.numpy())
    np.save(os.path.join(d, "final_alpha_cumprod.npy"), s.final_alpha_cumprod.reshape(1).numpy())
    for n in runs:
        s = PNDMScheduler.from_config(PNDMScheduler.load_config(d))
        s.set_timesteps(n)
        x = x0.clone(); samples = []
        for t in s.timesteps:
            x = s.step(f(x, int(t)), t, x).prev_sample
            samples.append(x.numpy().copy())
        rd = os.path.join(d, f"n{n}"); os.makedirs(rd, exist_ok=True)
        np.save(os.path.join(rd, "timesteps.npy"), s.timesteps.numpy().astype(np.int64))
        np.save(os.path.join(rd, "samples.npy"), np.stack(samples))
        print(name, n, len(samples), float(np.abs(samples[-1]).max()), flush=True)

# betas / alphas_cumprod for more table sizes (linspace chunking around n/2 and n % 16)
bd = os.path.join(out, "x_betas"); os.makedirs(bd, exist_ok=True)
for T in [1, 2, 15, 16, 17, 37, 999, 4000]:
    for sch, kw in [("linear", dict(beta_start=0.0003, beta_end=0.04)), ("scaled_linear", dict(beta_start=0.00085, beta_end=0.012)), ("squaredcos_cap_v2", {})]:
        s = PNDMScheduler(num_train_timesteps=T, beta_schedule=sch, **kw)
        np.save(os.path.join(bd, f"T{T}_{sch}.npy"), np.stack([s.betas.numpy(), s.alphas_cumprod.numpy()]))
