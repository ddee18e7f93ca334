"""Part 4.1's Mano (knowledge manipulation) at CPU scale: a 4-layer, 128-wide Llama-style model
learns mod-23 prefix arithmetic with up to L = 4 operators, answered in one token;
docs/part4-architecture.md has the world.

    python scripts/train.py --config=configs/mano/small.py                     (L = 4, Llama(RoPE))
    python scripts/train.py --config=configs/mano/small.py:mano,6,nope+canon   (L = 6, NoPE + Canon-ABCD)

The argument is "mano[,<L>][,<architecture>][,<layers>L<width>D]" (heads of 32 dims) with an architecture
of lmphys/models/part4.py (rope, rope+canon, rope4+canon, nope, nope+canon). Operators + - * and
knowledge augmentation as released. Training: batch 32 windows of 128 tokens, loss on every token,
2000 steps, AdamW (0.9, 0.98, eps 1e-6) lr 1e-3, 100 warmup steps, cosine to 10%, wd 0.1 (the
paper's schedule, shortened, at a higher rate for the small model). Evaluation every 500 steps:
answer accuracy per length 1..L (acc_len1..), acc at l = L, on 4 fixed windows per length.
"""
import os

import ml_collections

from lmphys.config import load_config_file
from lmphys.models import part4
from lmphys.worlds import mano

USAGE = "mano[,<L>][,<architecture>][,<layers>L<width>D], e.g. mano,6,rope+canon"


def get_config(arg: str = "mano") -> ml_collections.ConfigDict:
    _, size, architecture, shape = part4.split_argument(arg, ("mano",), USAGE)
    config = load_config_file(os.path.join(os.path.dirname(__file__), "..", "default.py"))
    config.task = mano.default_config()
    config.task.max_ops = size or 4
    config.task.batch_size, config.task.seq_len = 32, 128
    config.task.eval_windows = 4

    part4.apply_architecture(config.model, architecture)
    config.model.num_layers, config.model.num_heads, config.model.width = 4, 4, 128
    if shape:
        part4.apply_shape(config.model, shape, head_dim=32)
    config.model.max_len = config.task.seq_len

    part4.apply_optimizer(config.optim, learning_rate=1e-3, weight_decay=0.1, warmup_steps=100)

    config.train.steps = 2000
    config.train.eval_every = 500
    config.train.checkpoint_every = 500
    config.workdir = f"runs/mano_small_L{config.task.max_ops}_{architecture}"
    return config
