"""Throughput figures of the CFG sampler and membership test, for scripts/bench.py (Part 1 data path)."""
from __future__ import annotations

import time

import jax
import numpy as np

from lmphys.worlds.cfg import accepts, load_grammar, sample


def bench_sample(grammar: str = "cfg3f", n: int = 16384, repeats: int = 10) -> dict[str, float]:
    """Sampler speed on the default device: real tokens (sum of lengths) and strings per second."""
    g = load_grammar(grammar)
    jax.block_until_ready(sample(g, jax.random.key(0), n))  # compile
    tokens = 0
    start = time.perf_counter()
    for rep in range(repeats):
        _, lengths = jax.block_until_ready(sample(g, jax.random.key(rep + 1), n))
        tokens += int(lengths.sum())
    seconds = time.perf_counter() - start
    return {"tokens_per_s": tokens / seconds, "strings_per_s": n * repeats / seconds,
            "mean_len": tokens / (n * repeats), "n": float(n)}


def bench_accepts(grammar: str = "cfg3f", n: int = 4096, repeats: int = 2) -> dict[str, float]:
    """Membership-test speed on fresh samples (every program width they use compiled first):
    strings per second."""
    g = load_grammar(grammar)
    strings, lengths = (np.asarray(x) for x in sample(g, jax.random.key(0), n))
    for _ in range(4):  # each call compiles at most one program: these compile all the strings use
        if not bool(np.asarray(accepts(g, strings, lengths)).all()):
            raise AssertionError(f"{grammar}: a sampled string was rejected")
    start = time.perf_counter()
    for _ in range(repeats):
        np.asarray(accepts(g, strings, lengths))
    seconds = time.perf_counter() - start
    return {"strings_per_s": n * repeats / seconds, "tokens_per_s": float(lengths.sum()) * repeats / seconds,
            "n": float(n)}
