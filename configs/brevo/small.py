"""Part 4.1's Brevo (reasoning breadth) at CPU scale: a 4-layer, 128-wide Llama-style model learns
to list every ancestor of a query vertex of a small random DAG in topological order;
docs/part4-architecture.md has the world.

    python scripts/train.py --config=configs/brevo/small.py                      (Brevo1, N = 16, Llama(RoPE))
    python scripts/train.py --config=configs/brevo/small.py:brevo2,rope4+canon   (Brevo2 word names, N = 10)

The argument is "<brevo1|brevo2>[,<N>][,<architecture>][,<layers>L<width>D]" (heads of 32 dims) with an
architecture of lmphys/models/part4.py (rope, rope+canon, rope4+canon, nope, nope+canon).
Brevo1: one-token vertex names, N = 16, windows of 128 tokens (a test instance is ~80); Brevo2:
names of 2-4 tokens over V = 4, N = 10, windows of 256 (~140). Training: batch 32, 2000 steps,
AdamW (0.9, 0.98, eps 1e-6) lr 1e-3, 100 warmup steps, cosine to 10%, wd 0.03 (the paper's
schedule, shortened). Evaluation every 500 steps: greedy answers to 128 fixed test instances
(n = N), acc (any valid topological order of exactly the ancestors and the query), acc by depth.
"""
import os

import ml_collections

from lmphys.config import load_config_file
from lmphys.models import part4
from lmphys.worlds import brevo

# variant: (N, Brevo2, context)
SETTINGS = {"brevo1": (16, False, 128), "brevo2": (10, True, 256)}
USAGE = "<brevo1|brevo2>[,<N>][,<architecture>][,<layers>L<width>D], e.g. brevo2,rope4+canon"


def get_config(arg: str = "brevo1") -> ml_collections.ConfigDict:
    variant, size, architecture, shape = part4.split_argument(arg, tuple(SETTINGS), USAGE)
    max_size, multi, context = SETTINGS[variant]
    config = load_config_file(os.path.join(os.path.dirname(__file__), "..", "default.py"))
    config.task = brevo.default_config()
    config.task.max_size, config.task.multi = size or max_size, multi
    config.task.batch_size, config.task.seq_len = 32, context
    config.task.eval_instances = 128

    part4.apply_architecture(config.model, architecture)
    config.model.num_layers, config.model.num_heads, config.model.width = 4, 4, 128
    if shape:
        part4.apply_shape(config.model, shape, head_dim=32)
    config.model.max_len = config.task.seq_len

    part4.apply_optimizer(config.optim, learning_rate=1e-3, weight_decay=0.03, warmup_steps=100)

    config.train.steps = 2000
    config.train.eval_every = 500
    config.train.checkpoint_every = 500
    config.workdir = f"runs/brevo_small_{variant}_N{config.task.max_size}_{architecture}"
    return config
