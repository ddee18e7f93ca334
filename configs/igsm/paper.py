"""Part 2.1 at the paper's scale (GPU): pretraining a rotary GPT2-L-H on iGSM-med or iGSM-hard.

    python scripts/train.py --config=configs/igsm/paper.py:med            (GPT2-12-12, runs/igsm_med_12-12)
    python scripts/train.py --config=configs/igsm/paper.py:hard,20-9      (20 layers, 9 heads, 576 wide)
    python scripts/train.py --config=configs/igsm/paper.py:med,12-12,qp   (question before the problem)

The argument is "<med|hard>[,<L>-<H>][,qp]": L layers, H heads of 64 dims (width 64 H), default
12-12. Settings (FACTS.md, Part 2.1): AdamW (0.9, 0.98), lr 0.002, 1k warmup steps, cosine decay
to 1% of the peak; med: weight decay 0.05, batch 512, context 768, 100k steps; hard: weight decay
0.03, batch 256, context 1024, 200k steps. Training and evaluation rows are the context long
(eval_len = model.max_len = context; evaluation draws test problems that fit it). Blocks are
recomputed in the backward pass (model.remat) so a batch fits one GPU. Eight worker processes generate the batches (~1.3k problems/s
per core; a step needs 256-512). Evaluation every tenth of the run: greedy full-solution accuracy on
256 fixed test problems per op, in-distribution ops 1..15 (med) / 1..21 (hard) and OOD ops 20-23 /
28-32. --config.task.pack=True puts several whole problems in each row (one med problem fills
35% of a 768-token row; packed rows are 90% full). Part 2.2's retry data: add e.g. --config.task.retry_rate=0.5 (and task.retry_kind), or run
configs/sweeps/part2_retry.py:med.
"""
import os
import re

import ml_collections

from lmphys.config import load_config_file
from lmphys.errors import ConfigError
from lmphys.worlds import igsm

HEAD_DIM = 64
# difficulty: (weight decay, batch, context, steps)
SETTINGS = {"med": (0.05, 512, 768, 100_000), "hard": (0.03, 256, 1024, 200_000)}


def get_config(arg: str = "med") -> ml_collections.ConfigDict:
    difficulty, *rest = arg.split(",")
    fmt = "pq"
    if rest and rest[-1] == "qp":
        fmt, rest = "qp", rest[:-1]
    shape = re.fullmatch(r"([1-9]\d*)-([1-9]\d*)", rest[0] if rest else "12-12")
    if difficulty not in SETTINGS or len(rest) > 1 or not shape:
        raise ConfigError(f"config argument {arg!r} is invalid: it must be <med|hard>[,<L>-<H>][,qp], e.g. med,12-12")
    num_layers, num_heads = int(shape.group(1)), int(shape.group(2))
    weight_decay, batch_size, context, steps = SETTINGS[difficulty]

    config = load_config_file(os.path.join(os.path.dirname(__file__), "..", "default.py"))
    config.task = igsm.default_config()
    config.task.difficulty = difficulty
    config.task.fmt = fmt
    config.task.batch_size = batch_size
    config.task.seq_len = config.task.eval_len = context
    config.task.data_workers = 8
    config.task.eval_problems = 256

    config.model.num_layers, config.model.num_heads = num_layers, num_heads
    config.model.width = HEAD_DIM * num_heads
    config.model.max_len = context
    config.model.position = "rope"
    config.model.rope_fraction = 1.0
    # 512 rows x 768 tokens through 12+ layers: without recomputation the activations alone exceed
    # one GPU's memory; with it one block's worth is kept (~7x less temp memory measured on CPU).
    config.model.remat = True

    config.optim.learning_rate = 2e-3
    config.optim.b1, config.optim.b2 = 0.9, 0.98
    config.optim.warmup_steps = 1000
    config.optim.schedule = "cosine"
    config.optim.final_lr_fraction = 0.01
    config.optim.weight_decay = weight_decay

    config.train.steps = steps
    config.train.log_every_seconds = 30.0
    config.train.eval_every = steps // 10
    config.train.checkpoint_every = 2000
    config.train.keep_checkpoints = 2
    config.workdir = f"runs/igsm_{difficulty}_{num_layers}-{num_heads}" + ("_qp" if fmt == "qp" else "")
    return config
