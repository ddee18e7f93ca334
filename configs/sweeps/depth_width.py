"""Depth x width x seed on the default small grammar: the scale-out acceptance sweep.

    python scripts/sweep.py --config=configs/sweeps/depth_width.py            (CPU, ~10 min)
    python scripts/sweep.py --config=configs/sweeps/depth_width.py --status   (progress from the files)
    python scripts/sweep.py --config=configs/sweeps/depth_width.py --submit=slurm   (a SLURM array job)
    python scripts/report.py --sweep=runs/depth_width

2 depths x 2 widths x 2 seeds = 8 trials. The two seeds of each size share shapes, so they train
stacked as one job of K=2 models (4 jobs). Kill it at any point (Ctrl-C, SIGTERM, or kill -9) and
rerun the same command: finished trials are skipped, interrupted ones resume from their last
checkpoint, and the final table equals an uninterrupted run's. `:tiny` is the same sweep shrunk to
seconds per job, for smoke tests.
"""
import os

import ml_collections

from lmphys.config import load_config_file

SCALES = ("small", "tiny")


def get_config(scale: str = "small") -> ml_collections.ConfigDict:
    if scale not in SCALES:
        raise ValueError(f"scale {scale!r} is unknown: it must be one of {', '.join(SCALES)}")
    sweep = ml_collections.ConfigDict()
    sweep.workdir = "runs/depth_width" if scale == "small" else "runs/depth_width_tiny"
    base = load_config_file(os.path.join(os.path.dirname(__file__), "..", "default.py"))
    base.train.steps = 600
    base.train.eval_every = 600
    base.train.checkpoint_every = 100
    sweep.grid = ml_collections.ConfigDict(
        {"model": {"num_layers": (2, 4), "width": (64, 128)}, "seed": (0, 1)}
    )
    if scale == "tiny":
        base.task.batch_size, base.task.seq_len, base.model.max_len = 4, 32, 32
        base.task.eval_samples, base.task.eval_prefix_len, base.task.eval_kl_strings = 8, 4, 4
        base.optim.warmup_steps = 2
        base.train.steps, base.train.eval_every, base.train.checkpoint_every = 24, 24, 4
        base.train.log_every_seconds = 1e-6
        base.parallel.data = 1  # batches of 4 rows: one device per job
        sweep.grid.model.num_layers, sweep.grid.model.width = (1, 2), (16, 32)
    sweep.base = base
    sweep.analyses = ()
    sweep.max_models_per_job = 8
    # Resources of each array task under `--submit=slurm` (lmphys/cluster.py; 0 or "" leaves a
    # field to the cluster's defaults): one CPU job per task here.
    sweep.slurm = ml_collections.ConfigDict({
        "gpus_per_task": 0,  # --gpus-per-task
        "cpus_per_task": 2,  # --cpus-per-task
        "mem": "",  # --mem, e.g. "64G"
        "time": "01:00:00",  # --time
        "partition": "",  # --partition
        "max_running": 0,  # at most this many tasks at once (--array=...%N); 0: no limit
        "sbatch": [],  # further sbatch options, e.g. ["--account=lab"]
        "setup": [],  # shell lines run before the sweep, e.g. ["module load cuda"]
    })
    return sweep
