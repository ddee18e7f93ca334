"""Part 1's robustness finding: a model trained on clean strings only breaks on corrupted prefixes,
one trained with a share of perturbed strings completes them correctly.

    python scripts/sweep.py --config=configs/sweeps/part1_robustness.py         (cfg_small, CPU)
    python scripts/report.py --sweep=runs/part1_robustness_small
    python scripts/sweep.py --config=configs/sweeps/part1_robustness.py:mid     (cfg_mid, CPU, 6,000 steps)
    python scripts/sweep.py --config=configs/sweeps/part1_robustness.py:cfg3f   (paper scale, GPU)

Trials: task.corrupt_fraction 0 (clean) and 0.1 (a tenth of the training strings perturbed, each of
their tokens replaced with probability task.corrupt_rate). Both are evaluated on held-out prefixes
corrupted the same way (eval.corrupted_cut_accuracy) and on clean ones (eval.cut_accuracy), at the
run's sampling temperature (task.temperature, 1.0) and, by the analysis low_temperature, at the paper's
0.1 and 0.2 (columns low_temperature.T=0.1.corrupted_cut_accuracy, ...): a model trained on perturbed
strings reproduces their noise at 1.0 and corrects corrupted prefixes only when it samples near its
argmax.
"""
import os

import ml_collections

from lmphys.config import load_config_file


def get_config(base: str = "small") -> ml_collections.ConfigDict:
    here = os.path.dirname(__file__)
    sweep = ml_collections.ConfigDict()
    sweep.workdir = f"runs/part1_robustness_{base}"
    sweep.base = load_config_file(os.path.join(here, "..", "cfg", f"{base}.py"))
    # seed: a tuple, so a second seed runs as --config.grid.seed="(1,)" (or both: "(0,1)", stacked)
    sweep.grid = ml_collections.ConfigDict({"task": {"corrupt_fraction": (0.0, 0.1)}, "seed": (0,)})
    sweep.analyses = ("low_temperature",)
    return sweep
