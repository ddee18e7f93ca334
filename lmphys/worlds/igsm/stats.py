"""Statistics of iGSM problems, measured the way data/released_stats.json measured the released
generator (its `definitions` field), so lmphys can be compared with the release: by
tests/test_igsm_stats.py (z-tests) and scripts/igsm_stats.py (a table)."""
from __future__ import annotations

import collections
import functools
import json
import os

import numpy as np

from lmphys.worlds.igsm.graph import ABSTRACT
from lmphys.worlds.igsm.problem import Problem, generate
from lmphys.worlds.igsm.text import tokenizer


@functools.lru_cache(maxsize=1)
def released() -> dict:
    """The released generator's statistics (data/released_stats.json)."""
    with open(os.path.join(os.path.dirname(__file__), "data", "released_stats.json")) as handle:
        return json.load(handle)


def sentence_kinds(sentence) -> list[str]:
    """The kinds a problem sentence counts as (the reference's sentence_share keys)."""
    kinds = []
    if sentence.combine == "constant":
        kinds.append("constant")
    elif sentence.combine == "single" and not sentence.modifier:
        kinds.append("copy")
    if sentence.modifier:
        kinds.append("more_than" if sentence.modifier == "add" else "times")
    if sentence.combine == "sum":
        kinds.append("sum")
    if sentence.combine == "diff":
        kinds.append("difference")
    return kinds


def measure(problems: list[Problem]) -> dict:
    """Per-problem samples and shares with the reference's keys: "<name>": list of per-problem
    values (means), "<name>_share": {key: share} (distributions), plus "n"."""
    sentences = [s for p in problems for s in p.world.sentences.values()]
    layers = collections.Counter(len(items) for p in problems for items in p.world.items)
    kinds = collections.Counter(kind for s in sentences for kind in sentence_kinds(s))
    refs = collections.Counter(len(s.refs) for s in sentences)
    depths = collections.Counter(len(p.world.layers) for p in problems)
    bins = np.array([p.template for p in problems])
    return {
        "n": len(problems),
        "op": [p.op for p in problems],
        "solution_steps": [len(p.steps) for p in problems],
        "instance_params": [len(p.world.sentences) for p in problems],
        "depth_share": {str(d): depths[d] / len(problems) for d in (2, 3, 4)},
        "items_per_layer_share": {str(k): layers[k] / sum(layers.values()) for k in (2, 3, 4)},
        "answer_zero_share": float(np.mean([p.answer == 0 for p in problems])),
        "question_abstract_share": float(np.mean([p.question_param[0] == ABSTRACT for p in problems])),
        "sentence_share": {kind: kinds[kind] / len(sentences)
                           for kind in ("constant", "copy", "more_than", "times", "sum", "difference")},
        "refs_share": {str(k): refs[k] / len(sentences) for k in range(5)},
        "random_number_share": float(np.mean([s.combine == "constant" or bool(s.modifier) for s in sentences])),
        "test_share_released_bins": float(np.mean(bins >= 16)),
        "test_share_paper_bins": float(np.mean(bins >= 17)),
    }


def back_per_step(problems: list[Problem], rate: float, kind: str) -> list[float]:
    """[BACK] per solution step of each problem's retry data (repeated per step, so the mean is
    the ratio of totals, as the reference counts it)."""
    back = tokenizer().back_id
    out = []
    for seed, problem in enumerate(problems):
        ids = problem.solution_tokens(rate, kind, seed=seed)[0]
        out += [ids.count(back) / len(problem.steps)] * len(problem.steps)
    return out


def sample(difficulty: str, count: int, first_seed: int = 0, **kwargs) -> list[Problem]:
    return [generate(first_seed + seed, difficulty, split="any", **kwargs) for seed in range(count)]
