"""Regenerates tests/data/unet/extra/* (UNet2DModel configurations the golden set does not cover).
Run with diffusers 0.30.3 + torch 1.13 (CPU): python3 make_extra.py tests/data/unet/extra"""
import json, os, sys
import numpy as np, torch
import safetensors.torch
from diffusers import UNet2DModel
torch.set_num_threads(1)
out_root = sys.argv[1]
cases = {
  "f_fourier3": dict(sample_size=16, in_channels=3, out_channels=3, block_out_channels=[32, 32, 32],
      layers_per_block=1, down_block_types=["SkipDownBlock2D", "AttnSkipDownBlock2D", "SkipDownBlock2D"],
      up_block_types=["SkipUpBlock2D", "AttnSkipUpBlock2D", "SkipUpBlock2D"], time_embedding_type="fourier",
      mid_block_scale_factor=1.4142135623730951, norm_eps=1e-6, attention_head_dim=8, center_input_sample=True,
      norm_num_groups=8),
  "g_misc": dict(sample_size=16, in_channels=2, out_channels=4, block_out_channels=[8, 16, 16],
      layers_per_block=1, down_block_types=["ResnetDownsampleBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"],
      up_block_types=["AttnUpBlock2D", "AttnUpBlock2D", "ResnetUpsampleBlock2D"], downsample_type="resnet",
      upsample_type="resnet", attn_norm_num_groups=2, norm_num_groups=4, attention_head_dim=4,
      center_input_sample=True, flip_sin_to_cos=False, freq_shift=1, mid_block_scale_factor=2.0),
  "h_noattn": dict(sample_size=8, in_channels=1, out_channels=1, block_out_channels=[8, 16],
      layers_per_block=3, down_block_types=["DownBlock2D", "UNetResDownBlock2D"],
      up_block_types=["UNetResUpBlock2D", "UpBlock2D"], add_attention=False, norm_num_groups=4,
      downsample_padding=0, resnet_time_scale_shift="scale_shift"),
}
for name, cfg in cases.items():
    torch.manual_seed(11)
    m = UNet2DModel(**cfg).eval()
    g = torch.Generator().manual_seed(12)
    with torch.no_grad():
        for p in m.parameters(): p += 0.05 * torch.randn(p.shape, generator=g)
    d = os.path.join(out_root, name); os.makedirs(d, exist_ok=True)
    m.save_pretrained(os.path.join(d, "model"), safe_serialization=True)
    S = cfg["sample_size"]
    x = torch.randn((2, cfg["in_channels"], S, S), generator=torch.Generator().manual_seed(13))
    if cfg.get("time_embedding_type") == "fourier":
        tb = torch.tensor([0.5, 3.0], dtype=torch.float32); ts = 2
    else:
        tb = torch.tensor([7, 901], dtype=torch.int64); ts = 333
    with torch.no_grad():
        o1 = m(x, ts).sample; o2 = m(x, tb).sample
    np.save(os.path.join(d, "sample.npy"), x.numpy()); np.save(os.path.join(d, "t_batch.npy"), tb.numpy())
    np.save(os.path.join(d, "out_t_scalar.npy"), o1.numpy()); np.save(os.path.join(d, "out_t_batch.npy"), o2.numpy())
    json.dump({"config": cfg, "t_scalar": ts, "t_batch": tb.tolist(), "num_parameters": sum(p.numel() for p in m.parameters()),
               "weights": "torch.manual_seed(11); UNet2DModel(**config); every parameter += 0.05 * randn(generator seed 12)",
               "sample": "torch.randn((2, C, S, S), generator seed 13)", "diffusers": "0.30.3", "torch": torch.__version__},
              open(os.path.join(d, "manifest.json"), "w"), indent=1)
    print(name, "ok", float(o1.abs().max()), float(o2.abs().max()), sum(p.numel() for p in m.parameters()))
