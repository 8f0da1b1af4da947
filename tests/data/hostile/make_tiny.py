"""Writes tiny.safetensors: a minimal pndm single-file model (1 channel, 8x8, one level, mid-block
attention, ~2.9 k parameters) used by tests/cli_hostile.sh and as the fuzz seed of the model
loader. Run once with diffusers 0.30.3 (/usr/bin/python3 tests/data/hostile/make_tiny.py); the tests only
read the committed file."""
import os
import sys

import torch
from diffusers import UNet2DModel

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "tools"))
from pndm_format import clean_config, write_model_file  # noqa: E402

torch.manual_seed(0)
cfg = dict(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(4,),
           down_block_types=("DownBlock2D",), up_block_types=("UpBlock2D",), layers_per_block=1,
           norm_num_groups=2, attention_head_dim=4)
unet = UNet2DModel(**cfg)
sd = {k: v.detach().numpy() for k, v in unet.state_dict().items()}
sched = {"_class_name": "PNDMScheduler", "num_train_timesteps": 1000, "beta_start": 0.0001,
         "beta_end": 0.02, "beta_schedule": "linear", "skip_prk_steps": False}
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tiny.safetensors")
write_model_file(out, sd, clean_config(unet.config), sched)
print(out, sum(v.size for v in sd.values()), "parameters", os.path.getsize(out), "bytes")
