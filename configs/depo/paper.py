"""Part 4.1's Depo at the paper's scale (GPU): Depo1 (K = 8) or Depo2 (K = 16) at one of its data
sizes N, on one of the paper's architectures.

    python scripts/train.py --config=configs/depo/paper.py:depo1                   (N = 375, Llama(RoPE) 8L512D)
    python scripts/train.py --config=configs/depo/paper.py:depo2,100,rope4+canon   (N = 100)
    python scripts/train.py --config=configs/depo/paper.py:depo1,225,nope+canon,12L768D

The argument is "<depo1|depo2>[,<N>][,<architecture>][,<layers>L<width>D]": N one of the paper's sizes
(Depo1 375/300/225, Depo2 125/100/75; default the largest), an architecture of
lmphys/models/part4.py (default rope), a shape with 64-dim heads (default 8L512D). Settings (paper
A.1): context 2048, batch 128, loss on <ans> and the answers only, AdamW (0.9, 0.98, eps 1e-6),
weight decay 0.03, 1000 warmup steps, cosine decay to 10% of the peak, lr 1e-3 (the paper reports
the best of 3e-4, 5e-4, 1e-3, 2e-3); steps Depo1 112.5k/100k/87.5k, Depo2 150k/125k/100k for N
large to small. Depo1: words of 1-2 tokens over V = 50; Depo2: 5-7 tokens over V = 3 as released
(the paper's text says 4: --config.task.vocab=4). Eight worker processes make the windows.
Evaluation every tenth of the run on 128 fixed test windows (n = N, k = 1, 2, 4, ..., K): the
paper reports acc_k<K> and acc_k<K/2>.
"""
import os

import ml_collections

from lmphys.config import load_config_file
from lmphys.errors import ConfigError
from lmphys.models import part4
from lmphys.worlds import depo

# variant: (K, V, word lengths, {N: steps})
SETTINGS = {
    "depo1": (8, 50, (1, 2), {375: 112_500, 300: 100_000, 225: 87_500}),
    "depo2": (16, 3, (5, 7), {125: 150_000, 100: 125_000, 75: 100_000}),
}
USAGE = "<depo1|depo2>[,<N>][,<architecture>][,<layers>L<width>D], e.g. depo1,300,rope+canon"


def get_config(arg: str = "depo1") -> ml_collections.ConfigDict:
    variant, size, architecture, shape = part4.split_argument(arg, tuple(SETTINGS), USAGE)
    max_hops, vocab, (shortest, longest), steps_of = SETTINGS[variant]
    size = size or max(steps_of)
    if size not in steps_of:
        raise ConfigError(f"config argument {arg!r} is invalid: {variant}'s paper sizes are "
                          f"{', '.join(map(str, steps_of))}")
    config = load_config_file(os.path.join(os.path.dirname(__file__), "..", "default.py"))
    config.task = depo.default_config()
    config.task.max_size, config.task.max_hops, config.task.vocab = size, max_hops, vocab
    config.task.min_word_len, config.task.max_word_len = shortest, longest
    config.task.batch_size, config.task.seq_len = 128, 2048
    config.task.eval_windows = 128
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
