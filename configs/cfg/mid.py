"""Part 1 one level deeper than cfg_small, for the robustness finding at CPU scale.

    python scripts/train.py --config=configs/cfg/mid.py                         (rotary GPT)
    python scripts/sweep.py --config=configs/sweeps/part1_robustness.py:mid     (clean vs perturbed)

cfg_mid (lmphys/worlds/cfg/data/README.md) has 5 levels and strings of 24-54 tokens (cfg_small: 4
levels, 8-27). On cfg_small a clean-trained model completes corrupted 8-token prefixes nearly as well
as clean ones, so the paper's contrast (cut 50 of cfg3f's ~250-token strings) does not show; here the
prefix is 20 tokens, about half the string as on cfg_small, and carries about 2 corrupted tokens at
the rate 0.1. The deeper grammar takes longer to learn: the default model reaches 0.63 generation
accuracy at 2,400 steps (2026-12-03), so this trains 6,000.
"""
import os

import ml_collections

from lmphys.config import load_config_file
from lmphys.worlds.cfg import apply_variant


def get_config(variant: str = "rope") -> ml_collections.ConfigDict:
    config = load_config_file(os.path.join(os.path.dirname(__file__), "..", "default.py"))
    config.workdir = f"runs/cfg_mid_{variant}"
    config.task.grammar = "cfg_mid"
    config.task.eval_prefix_len = 20
    config.train.steps = 6000
    config.train.eval_every = 1500
    return apply_variant(config, variant)
