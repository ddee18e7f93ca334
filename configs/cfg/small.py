"""Part 1 at CPU scale: the default 4-layer, 128-wide model on cfg_small, a few minutes on 2 cores.

    python scripts/train.py --config=configs/cfg/small.py:relative   (rope absolute relative pos uniform none)
    python scripts/train.py --config=configs/cfg/small.py:bert       (BERT-style encoder, masked LM)

The same variants as configs/cfg/cfg3f.py at paper scale; configs/sweeps/part1_small.py runs them all.
"""
import os

import ml_collections

from lmphys.config import load_config_file
from lmphys.worlds.cfg import apply_variant


def get_config(variant: str = "rope") -> ml_collections.ConfigDict:
    config = load_config_file(os.path.join(os.path.dirname(__file__), "..", "default.py"))
    config.workdir = f"runs/cfg_small_{variant}"
    return apply_variant(config, variant)
