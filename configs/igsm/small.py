"""Parts 2.1 / 2.2 at CPU scale: a rotary GPT (head dim 32) pretrains on "small" iGSM problems
(the released generator's process with max_op 4 and at most 12 edges: training op <= 4, OOD ops
5-6) on 2 CPU cores; docs/part2-igsm.md has the measured times and what the models learn.

    python scripts/train.py --config=configs/igsm/small.py                    (GPT-4-4, 128 wide)
    python scripts/train.py --config=configs/igsm/small.py:8-3                (8 layers, 3 heads, 96 wide)
    python scripts/train.py --config=configs/igsm/small.py:4-4,0.5            (Part 2.2: retry data, rate 0.5)
    python scripts/train.py --config=configs/igsm/small.py:4-4,0.5,weak       (retry_weak; or miss)
    python scripts/train.py --config=configs/igsm/small.py:4-4,0.5,retry,mask (mistakes out of the loss)

The argument is "[<L>-<H>][,<retry_rate>[,<retry_kind>[,mask]]]": L layers, H heads of 32 dims
(width 32 H). Training: batch 32 rows of 256 tokens (one problem per row, mean ~135 real tokens),
1200 steps (~9.8M row tokens, ~5.2M of them real), AdamW (0.9, 0.98) lr 2e-3, 100 warmup steps,
cosine to 1% of the peak (the paper's schedule, shortened), wd 0.05. Evaluation once, at the end:
greedy full-solution accuracy on 100 fixed test problems per op (acc_op1..6, acc_id, acc_ood).
The training process generates the data (data_workers 0: ~1.3k problems/s per core, far more
than the ~60 rows/s the model consumes). configs/igsm/paper.py is the paper's scale (GPU);
configs/sweeps/part2_depth_width.py and part2_retry.py sweep this file.
"""
import os
import re

import ml_collections

from lmphys.config import load_config_file
from lmphys.errors import ConfigError
from lmphys.worlds import igsm

HEAD_DIM = 32


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    shape_text, *retry = arg.split(",")
    shape = re.fullmatch(r"([1-9]\d*)-([1-9]\d*)", shape_text or "4-4")
    if not shape or len(retry) > 3 or (len(retry) == 3 and retry[2] != "mask"):
        raise ConfigError(f"config argument {arg!r} is invalid: it must be "
                          "[<L>-<H>][,<retry_rate>[,<retry_kind>[,mask]]], e.g. 4-4,0.5,weak")
    num_layers, num_heads = int(shape.group(1)), int(shape.group(2))
    config = load_config_file(os.path.join(os.path.dirname(__file__), "..", "default.py"))
    config.task = igsm.default_config()
    config.task.difficulty = "small"
    config.task.batch_size, config.task.seq_len, config.task.eval_len = 32, 256, 320
    config.task.eval_problems = 100  # per op: accuracies to about +-5%
    config.task.data_workers = 0
    if retry:
        try:
            config.task.retry_rate = float(retry[0])
        except ValueError:
            raise ConfigError(f"config argument {arg!r} is invalid: retry rate {retry[0]!r} is not a number") from None
    config.task.retry_kind = retry[1] if len(retry) > 1 else "retry"
    config.task.mask_mistakes = len(retry) == 3

    config.model.num_layers, config.model.num_heads = num_layers, num_heads
    config.model.width = HEAD_DIM * num_heads
    config.model.max_len = config.task.eval_len

    config.optim.learning_rate = 2e-3
    config.optim.warmup_steps = 100
    config.optim.schedule = "cosine"
    config.optim.final_lr_fraction = 0.01
    config.optim.weight_decay = 0.05

    config.train.steps = 1200
    config.train.eval_every = config.train.steps  # the loop also evaluates after the last step
    config.train.checkpoint_every = 200
    config.workdir = f"runs/igsm_small_{num_layers}-{num_heads}{_retry_suffix(config.task)}"
    return config


def _retry_suffix(task: ml_collections.ConfigDict) -> str:
    """'_retry0.5', '_weak0.5_mask', or '' for clean data."""
    if not task.retry_rate:
        return ""
    return f"_{task.retry_kind}{task.retry_rate:g}" + ("_mask" if task.mask_mistakes else "")
