"""Config files for the runs and sweeps that tests start in other processes (scripts/train.py,
scripts/sweep.py, SLURM array tasks): the tiny run of tests/conftest.py.

    --config=tests/tiny_run.py:run        one tiny run (conftest.tiny_config)
    --config=tests/tiny_run.py:igsm       a tiny run on iGSM problems made on the host by a worker
    --config=tests/tiny_run.py:sweep      num_layers 1, 2 x seed 0, 1: two jobs of two stacked models,
                                          and two trials with num_heads=3, which fail validation
                                          (a job each)
"""
import os

import ml_collections

from lmphys.config import load_config_file
from tests.conftest import REPO, tiny_config

KINDS = ("run", "igsm", "sweep")


def get_config(kind: str = "run") -> ml_collections.ConfigDict:
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r} is unknown: it must be one of {', '.join(KINDS)}")
    base = tiny_config("runs/tiny", steps=8)
    base.train.eval_every = base.train.checkpoint_every = 1000
    base.task.eval_kl_strings = 4  # the final evaluation is most of a tiny run's time
    if kind == "run":
        return base
    if kind == "igsm":
        config = load_config_file(os.path.join(REPO, "configs", "igsm", "small.py"), "1-1")
        config.workdir = "runs/tiny_igsm"
        config.task.batch_size, config.task.eval_problems, config.task.eval_ops = 4, 1, "1,5"
        config.task.data_workers = 1
        config.optim.warmup_steps = 2
        config.train.steps, config.train.eval_every, config.train.checkpoint_every = 6, 1000, 3
        config.train.log_every_seconds = 1e-6
        config.parallel.data = 1
        return config
    sweep = ml_collections.ConfigDict()
    sweep.workdir = "runs/tiny_sweep"
    # Long enough (a few seconds of steps) for a test to requeue a task while it trains.
    base.train.steps, base.train.checkpoint_every = 300, 25
    sweep.base = base
    sweep.grid = ml_collections.ConfigDict({"seed": [0, 1]})
    sweep.cases = [{"model": {"num_layers": 1}}, {"model": {"num_layers": 2}}, {"model": {"num_heads": 3}}]
    sweep.analyses = ()
    sweep.slurm = ml_collections.ConfigDict({"cpus_per_task": 1, "time": "00:10:00"})
    return sweep
