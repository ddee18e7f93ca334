"""Part 4.1's Depo (reasoning depth) at CPU scale: a 4-layer, 128-wide Llama-style model learns
k-hop retrieval (K = 4) over a small shuffled cycle; docs/part4-architecture.md has the world.

    python scripts/train.py --config=configs/depo/small.py                       (Depo1 words, Llama(RoPE))
    python scripts/train.py --config=configs/depo/small.py:depo2,nope+canon      (Depo2 words, NoPE + Canon-ABCD)
    python scripts/train.py --config=configs/depo/small.py:depo1,24,rope4+canon  (N = 24)

The argument is "<depo1|depo2>[,<N>][,<architecture>][,<layers>L<width>D]" (heads of 32 dims) with an architecture of
lmphys/models/part4.py (rope, rope+canon, rope4+canon, nope, nope+canon). Depo1: words of 1-2
tokens over V = 50, N = 16; Depo2: 5-7 tokens over V = 3 (as released), N = 8; K = 4 for both
(the paper's choice for weak models). Training: batch 32 windows of 128 / 256 tokens, 2000 steps,
AdamW (0.9, 0.98, eps 1e-6) lr 1e-3, 100 warmup steps, cosine to 10%, wd 0.03 (the paper's
schedule, shortened). Evaluation every 500 steps: exact-match accuracy by k (acc_k1, acc_k2,
acc_k4) on 32 fixed test windows (n = N).
"""
import os

import ml_collections

from lmphys.config import load_config_file
from lmphys.models import part4
from lmphys.worlds import depo

# variant: (N, K, V, word lengths, context)
SETTINGS = {"depo1": (16, 4, 50, (1, 2), 128), "depo2": (8, 4, 3, (5, 7), 256)}
USAGE = "<depo1|depo2>[,<N>][,<architecture>][,<layers>L<width>D], e.g. depo2,nope+canon"


def get_config(arg: str = "depo1") -> ml_collections.ConfigDict:
    variant, size, architecture, shape = part4.split_argument(arg, tuple(SETTINGS), USAGE)
    max_size, max_hops, vocab, (shortest, longest), context = SETTINGS[variant]
    config = load_config_file(os.path.join(os.path.dirname(__file__), "..", "default.py"))
    config.task = depo.default_config()
    config.task.max_size, config.task.max_hops, config.task.vocab = size or max_size, max_hops, vocab
    config.task.min_word_len, config.task.max_word_len = shortest, longest
    config.task.batch_size, config.task.seq_len = 32, context
    if size:  # a larger N needs a longer window for its test instances
        config.task.seq_len = max(context, depo.data.longest_test_instance(depo.task.spec_of(config.task)))
    config.task.eval_windows = 32

    part4.apply_architecture(config.model, architecture)
    config.model.num_layers, config.model.num_heads, config.model.width = 4, 4, 128
    if shape:
        part4.apply_shape(config.model, shape, head_dim=32)
    config.model.max_len = config.task.seq_len

    part4.apply_optimizer(config.optim, learning_rate=1e-3, weight_decay=0.03, warmup_steps=100)

    config.train.steps = 2000
    config.train.eval_every = 500
    config.train.checkpoint_every = 500
    config.workdir = f"runs/depo_small_{variant}_N{config.task.max_size}_{architecture}"
    return config
