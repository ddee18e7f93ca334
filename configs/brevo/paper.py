"""Part 4.1's Brevo at the paper's scale (GPU): Brevo1 or Brevo2 at one of its data sizes N, on one
of the paper's architectures.

    python scripts/train.py --config=configs/brevo/paper.py:brevo1                  (N = 110, Llama(RoPE) 8L512D)
    python scripts/train.py --config=configs/brevo/paper.py:brevo2,30,nope+canon    (N = 30)
    python scripts/train.py --config=configs/brevo/paper.py:brevo1,70,rope4+canon,12L768D

The argument is "<brevo1|brevo2>[,<N>][,<architecture>][,<layers>L<width>D]": N one of the paper's sizes
(Brevo1 110/90/70, Brevo2 50/40/30; default the largest), an architecture of
lmphys/models/part4.py (default rope), a shape with 64-dim heads (default 8L512D). Settings (paper
A.2): Brevo1 context 1024, batch 256, steps 150k/125k/100k; Brevo2 context 1536, batch 192, steps
250k/225k/200k (N large to small); loss on <ans>, the answer and <eos>; AdamW (0.9, 0.98, eps
1e-6), weight decay 0.03, 1000 warmup steps, cosine decay to 10%, lr 1e-3 (the paper reports the
best of 3e-4, 5e-4, 1e-3, 2e-3). The query is the release's (the last vertex built);
--config.task.query_from=last_quarter draws it from the last quarter as the paper's text says.
Eight worker processes make the windows. Evaluation every tenth of the run: greedy answers to 512
fixed test instances (n = N), acc and acc by depth 1..5 (the paper's Fig 9).
"""
import os

import ml_collections

from lmphys.config import load_config_file
from lmphys.errors import ConfigError
from lmphys.models import part4
from lmphys.worlds import brevo

# variant: (Brevo2, context, batch, {N: steps})
SETTINGS = {
    "brevo1": (False, 1024, 256, {110: 150_000, 90: 125_000, 70: 100_000}),
    "brevo2": (True, 1536, 192, {50: 250_000, 40: 225_000, 30: 200_000}),
}
USAGE = "<brevo1|brevo2>[,<N>][,<architecture>][,<layers>L<width>D], e.g. brevo1,90,rope+canon"


def get_config(arg: str = "brevo1") -> ml_collections.ConfigDict:
    variant, size, architecture, shape = part4.split_argument(arg, tuple(SETTINGS), USAGE)
    multi, context, batch_size, steps_of = SETTINGS[variant]
    size = size or max(steps_of)
    if size not in steps_of:
        raise ConfigError(f"config argument {arg!r} is invalid: {variant}'s paper sizes are "
                          f"{', '.join(map(str, steps_of))}")
    config = load_config_file(os.path.join(os.path.dirname(__file__), "..", "default.py"))
    config.task = brevo.default_config()
    config.task.max_size, config.task.multi = size, multi
    config.task.batch_size, config.task.seq_len = batch_size, context
    config.task.eval_instances = 512
    config.task.data_workers = 8

    part4.apply_architecture(config.model, architecture)
    part4.apply_shape(config.model, shape or "8L512D")
    config.model.max_len = config.task.seq_len

    part4.apply_optimizer(config.optim, learning_rate=1e-3, weight_decay=0.03, warmup_steps=1000)

    config.train.steps = steps_of[size]
    config.train.log_every_seconds = 30.0
    config.train.eval_every = config.train.steps // 10
    config.train.checkpoint_every = 2500
    config.workdir = f"runs/{variant}_N{size}_{architecture}_{shape or '8L512D'}"
    return config
