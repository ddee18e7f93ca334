"""Part 3.2: every knowledge-manipulation task, with and without chain of thought, tested on
people whose manipulation questions were never trained.

    python scripts/sweep.py --config=configs/sweeps/part3_manipulation.py          (CPU scale)
    python scripts/sweep.py --config=configs/sweeps/part3_manipulation.py:paper    (GPU)
    python scripts/sweep.py --config=configs/sweeps/part3_manipulation.py:small,reverse
    python scripts/report.py --sweep=runs/part3_manipulation_small

Some kinds only: --config.grid.task.qa_kind="('classify_month_12','inverse_birth')"; without or
with CoT only: --config.grid.task.qa_cot="(True,)"; two model seeds on the same people, split and
questions (report.py's results_mean.md gives mean ± std): --config.grid.seed="(0,1)". The trials
share the sweep's workdir, so a later run of the whole grid skips the ones already done.

",reverse" trains on each biography and its reversed twin (task.reverse: the values before the
name) and asks inverse search only, without and with CoT, in its own workdir
(runs/part3_manipulation_<scale>_reverse): the paper's "unless the data is reversed".

Read manip_test (whole answer exact) and manip_test_final (the final answer right) per trial.
The paper: without CoT, classification and comparison stay near chance on held-out people and
inverse search at ~0%; with CoT they follow the retrieval accuracy.
"""
import os

import ml_collections

from lmphys.config import load_config_file
from lmphys.errors import ConfigError
from lmphys.worlds.bio.manipulation import KINDS


def get_config(arg: str = "small") -> ml_collections.ConfigDict:
    scale, _, reverse = arg.partition(",")
    if scale not in ("small", "paper") or reverse not in ("", "reverse"):
        raise ConfigError(f"config argument {arg!r} is invalid: it must be small or paper, then optionally ,reverse")
    sweep = ml_collections.ConfigDict()
    sweep.workdir = f"runs/part3_manipulation_{scale}" + ("_reverse" if reverse else "")
    sweep.base = load_config_file(os.path.join(os.path.dirname(__file__), "..", "bio", "manipulation.py"),
                                  f"classify_month_2,cot,{scale}{',reverse' if reverse else ''}")
    sweep.base.workdir = sweep.workdir
    kinds = ("inverse_birth",) if reverse else tuple(KINDS)
    # Tuples, so a subset runs from the command line: --config.grid.task.qa_kind="('inverse_birth',)",
    # and a second model seed trains stacked with the first: --config.grid.seed="(0,1)".
    sweep.grid = ml_collections.ConfigDict({"task": {"qa_kind": kinds, "qa_cot": (False, True)}, "seed": (0,)})
    sweep.analyses = ()
    return sweep
