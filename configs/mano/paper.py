"""Part 4.1's Mano at the paper's scale (GPU): mod-23 prefix arithmetic with up to L = 16, 13 or 10
operators, on one of the paper's architectures.

    python scripts/train.py --config=configs/mano/paper.py                        (L = 16, Llama(RoPE) 8L512D)
    python scripts/train.py --config=configs/mano/paper.py:mano,10,rope4+canon
    python scripts/train.py --config=configs/mano/paper.py:mano,13,nope+canon,12L768D

The argument is "mano[,<L>][,<architecture>][,<layers>L<width>D]": L one of 16/13/10 (default 16), an
architecture of lmphys/models/part4.py (default rope), a shape with 64-dim heads (default
8L512D). Settings (paper A.4): context 1024, batch 64, loss on every token, AdamW (0.9, 0.98, eps
1e-6), weight decay 0.1, 1000 warmup steps, cosine decay to 10%, lr 3e-4 (the paper reports the
best of 1e-4, 2e-4, 3e-4, 5e-4 over two seeds), steps 110k/95k/80k for L = 16/13/10; operators + - *
with knowledge augmentation, as released. Eight worker processes make the windows. Evaluation
every tenth of the run: answer accuracy per length on 8 fixed windows each (~50-60 expressions per
window); the paper reports acc (l = L).
"""
import os

import ml_collections

from lmphys.config import load_config_file
from lmphys.errors import ConfigError
from lmphys.models import part4
from lmphys.worlds import mano

STEPS = {16: 110_000, 13: 95_000, 10: 80_000}
USAGE = "mano[,<L>][,<architecture>][,<layers>L<width>D], e.g. mano,13,rope+canon"


def get_config(arg: str = "mano") -> ml_collections.ConfigDict:
    _, size, architecture, shape = part4.split_argument(arg, ("mano",), USAGE)
    size = size or max(STEPS)
    if size not in STEPS:
        raise ConfigError(f"config argument {arg!r} is invalid: the paper's lengths L are {', '.join(map(str, STEPS))}")
    config = load_config_file(os.path.join(os.path.dirname(__file__), "..", "default.py"))
    config.task = mano.default_config()
    config.task.max_ops = size
    config.task.batch_size, config.task.seq_len = 64, 1024
    config.task.eval_windows = 8
    config.task.data_workers = 8

    part4.apply_architecture(config.model, architecture)
    part4.apply_shape(config.model, shape or "8L512D")
    config.model.max_len = config.task.seq_len

    part4.apply_optimizer(config.optim, learning_rate=3e-4, weight_decay=0.1, warmup_steps=1000)

    config.train.steps = STEPS[size]
    config.train.log_every_seconds = 30.0
    config.train.eval_every = config.train.steps // 10
    config.train.checkpoint_every = 2500
    config.workdir = f"runs/mano_L{size}_{architecture}_{shape or '8L512D'}"
    return config
