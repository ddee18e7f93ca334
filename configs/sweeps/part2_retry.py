"""Part 2.2, learning from mistakes: pretraining on retry data (a wrong step, then [BACK]) against
clean data, at equal training tokens.

    python scripts/sweep.py --config=configs/sweeps/part2_retry.py          (CPU, ~3 h)
    python scripts/sweep.py --config=configs/sweeps/part2_retry.py:med      (GPU, GPT2-12-12 on iGSM-med)
    python scripts/report.py --sweep=runs/part2_retry_small                 (accuracy_by_op.png)

Seven trials: retry_rate 0 (clean), 0.05, 0.2 and 0.5 with retry_kind retry (any parameter that
cannot be computed yet, as released); weak (this or a later step of the solution, as released)
and miss (any parameter not yet computed; not in the release) at 0.5; and retry 0.5 with the
mistakes masked out of the loss. Every trial trains on the same number of real (non-pad) tokens
(task.train_tokens, which sets train.steps from the mean row length): retry solutions are longer,
so those runs take fewer steps. small: configs/igsm/small.py (GPT-4-4) with 5.8M tokens, about its
1200 clean steps (~1190 clean, ~1090 at rate 0.5, ~1050 for miss; ~7.9k steps in all, ~3 h on 2
cores; with --config.base.task.train_tokens=3000000 each trial took 12-17 min). med:
configs/igsm/paper.py:med with 16.5B tokens, about its 100k clean steps (rows of ~322 real tokens;
~90k steps at rate 0.5).

The paper (med, op 23): 78% clean -> 94-95% at retry_rate 0.5, no masking needed; weak about as
good, miss weaker. Analyses are off here; the V-probes of Part 2.1 (can_next detects mistakes)
run on every trained trial with --config.analyses='("reasoning_probes",)' (lmphys/sweep.py).
"""
import os

import ml_collections

from lmphys.config import load_config_file
from lmphys.errors import ConfigError

# (retry_rate, retry_kind, mask_mistakes)
RETRY_SETTINGS = ((0.0, "retry", False), (0.05, "retry", False), (0.2, "retry", False), (0.5, "retry", False),
                  (0.5, "weak", False), (0.5, "miss", False), (0.5, "retry", True))
TRAIN_TOKENS = {"small": 5_800_000, "med": 16_500_000_000}  # ~1200 / ~100k steps of clean data


def get_config(scale: str = "small") -> ml_collections.ConfigDict:
    here = os.path.join(os.path.dirname(__file__), "..", "igsm")
    if scale == "small":
        base = load_config_file(os.path.join(here, "small.py"))
    elif scale == "med":
        base = load_config_file(os.path.join(here, "paper.py"), "med")
    else:
        raise ConfigError(f"config argument {scale!r} is invalid: it must be small or med")
    base.task.train_tokens = TRAIN_TOKENS[scale]
    sweep = ml_collections.ConfigDict()
    sweep.workdir = f"runs/part2_retry_{scale}"
    sweep.base = base
    # mask_mistakes is named only where it is on, so the other trial ids stay short.
    sweep.cases = [{"task": {"retry_rate": rate, "retry_kind": kind, **({"mask_mistakes": True} if mask else {})}}
                   for rate, kind, mask in RETRY_SETTINGS]
    sweep.grid = ml_collections.ConfigDict({"seed": (0,)})  # a tuple, so --config.grid.seed="(0,1)" works
    sweep.analyses = ()
    return sweep
