"""Part 1's position-scheme comparison: six decoders, each followed by the structure probes.

    python scripts/sweep.py --config=configs/sweeps/part1_positions.py         (cfg_small, CPU, ~20 min)
    python scripts/report.py --sweep=runs/part1_positions_small
    python scripts/sweep.py --config=configs/sweeps/part1_positions.py:cfg3f   (paper scale, GPU)

Each trial trains configs/cfg/<base>.py (small or cfg3f) with one position scheme, then runs the structure analysis
(linear probes for NT ancestors and boundaries, trained vs random init; attention to the previous
boundary). The encoder runs on its own: configs/cfg/<base>.py:bert.
"""
import os

import ml_collections

from lmphys.config import load_config_file


def get_config(base: str = "small") -> ml_collections.ConfigDict:
    here = os.path.dirname(__file__)
    sweep = ml_collections.ConfigDict()
    sweep.workdir = f"runs/part1_positions_{base}"
    sweep.base = load_config_file(os.path.join(here, "..", "cfg", f"{base}.py"))
    sweep.grid = ml_collections.ConfigDict(
        # seed: a tuple, so a second seed runs as --config.grid.seed="(1,)" (or both: "(0,1)",
        # stacked per position scheme)
        {"model": {"position": ("absolute", "relative", "rope", "pos", "uniform", "none")}, "seed": (0,)}
    )
    sweep.analyses = ("structure",)
    return sweep
