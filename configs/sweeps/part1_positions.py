"""Part 1's position-scheme comparison at CPU scale: six decoders on cfg_small, then probes.

    python scripts/sweep.py --config=configs/sweeps/part1_small.py     (about 20 minutes on 2 cores)
    python scripts/report.py --sweep=runs/part1_small

Each trial trains configs/cfg/small.py with one position scheme, then runs the structure analysis
(linear probes for NT ancestors and boundaries, trained vs random init; attention to the previous
boundary). Add 'bert' runs with configs/cfg/small.py:bert; the paper-scale grid is part1_cfg3f.py.
"""
import os

import ml_collections

from lmphys.config import load_config_file


def get_config(base: str = "small") -> ml_collections.ConfigDict:
    here = os.path.dirname(__file__)
    sweep = ml_collections.ConfigDict()
    sweep.workdir = f"runs/part1_{base}"
    sweep.base = load_config_file(os.path.join(here, "..", "cfg", f"{base}.py"))
    sweep.grid = ml_collections.ConfigDict(
        {"model": {"position": ["absolute", "relative", "rope", "pos", "uniform", "none"]}}
    )
    sweep.analyses = ("structure",)
    return sweep
