"""lmphys's iGSM against the released generator's statistics (tests/data/igsm_released_stats.json,
measured by running the release; its source is recorded there): op, solution length, world sizes,
depths, items per layer, sentence kinds, answers, question kinds, the test share of both bin
splits, per fixed op, and the retry data's [BACK] rate. Each comparison is a two-sample z-test
at |z| < 4.5 (fixed seeds: deterministic), which the earlier lmphys world (solution steps 10.1 at
op 10 against the release's 8.2; "less than" and "product of" sentences; answers 0 in 7% not 12%)
fails by far."""
import collections
import json
import math
import os

import numpy as np
import pytest

from lmphys.worlds import igsm

REFERENCE = json.load(open(os.path.join(os.path.dirname(__file__), "data", "igsm_released_stats.json")))
Z = 4.5


def _share_close(ours: float, n_ours: int, theirs: float, n_theirs: int, what: str) -> None:
    pooled = (ours * n_ours + theirs * n_theirs) / (n_ours + n_theirs)
    sd = math.sqrt(max(pooled * (1 - pooled), 1e-4) * (1 / n_ours + 1 / n_theirs))
    assert abs(ours - theirs) < Z * sd, f"{what}: ours {ours:.4f}, released {theirs:.4f} (sd {sd:.4f})"


def _mean_close(values, theirs: float, n_theirs: int, what: str) -> None:
    values = np.asarray(values, float)
    sd = math.sqrt(max(values.var(), 1e-4) * (1 / len(values) + 1 / n_theirs))
    assert abs(values.mean() - theirs) < Z * sd, f"{what}: ours {values.mean():.3f}, released {theirs:.3f} (sd {sd:.3f})"


@pytest.fixture(scope="module", params=["med", "hard"])
def sample(request):
    difficulty = request.param
    count = {"med": 1500, "hard": 600}[difficulty]
    return difficulty, [igsm.generate(seed, difficulty, split="any") for seed in range(count)]


def _sentence_kind(sentence) -> list[str]:
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


def test_free_draws_follow_the_released_distributions(sample):
    difficulty, problems = sample
    reference = REFERENCE[difficulty]
    n, theirs = len(problems), reference["n"]
    _mean_close([p.op for p in problems], reference["op_mean"], theirs, "op")
    _mean_close([len(p.steps) for p in problems], reference["solution_steps_mean"], theirs, "solution steps")
    _mean_close([len(p.world.sentences) for p in problems], reference["instance_params_mean"], theirs, "instance params")
    depths = collections.Counter(len(p.world.layers) for p in problems)
    for depth, share in reference["depth_share"].items():
        _share_close(depths[int(depth)] / n, n, share, theirs, f"depth {depth}")
    layers = collections.Counter(len(items) for p in problems for items in p.world.items)
    for size, share in reference["items_per_layer_share"].items():  # layers of one problem are correlated:
        _share_close(layers[int(size)] / sum(layers.values()), n, share, theirs, f"{size} items per layer")  # n problems
    _share_close(np.mean([p.answer == 0 for p in problems]), n, reference["answer_zero_share"], theirs, "answer 0")
    _share_close(np.mean([p.question_param[0] == 1 for p in problems]), n, reference["question_abstract_share"], theirs,
                 "abstract question")
    sentences = [s for p in problems for s in p.world.sentences.values()]
    kinds = collections.Counter(kind for s in sentences for kind in _sentence_kind(s))
    for kind, share in reference["sentence_share"].items():
        _share_close(kinds[kind] / len(sentences), n, share, theirs, f"{kind} sentences")
    refs = collections.Counter(len(s.refs) for s in sentences)
    for count, share in reference["refs_share"].items():
        _share_close(refs[int(count)] / len(sentences), n, share, theirs, f"{count} references")
    _share_close(np.mean([s.combine == "constant" or bool(s.modifier) for s in sentences]), n,
                 reference["random_number_share"], theirs, "sentences with a number")
    bins = np.array([p.template for p in problems])
    _share_close(np.mean(bins >= 16), n, reference["test_share_released_bins"], theirs, "test share (released bins)")
    _share_close(np.mean(bins >= 17), n, reference["test_share_paper_bins"], theirs, "test share (paper bins)")


@pytest.mark.parametrize("op", [1, 2, 5, 10])
def test_fixed_op_draws_follow_the_released_distributions(op):
    reference = REFERENCE["fixed_op_med"][str(op)]
    problems = [igsm.generate(10_000 + seed, "med", op=op, split="any") for seed in range(300)]
    n, theirs = len(problems), reference["n"]
    assert all(p.op == op for p in problems)
    _mean_close([len(p.steps) for p in problems], reference["solution_steps_mean"], theirs, f"steps at op {op}")
    _share_close(np.mean([p.question_param[0] == 1 for p in problems]), n, reference["question_abstract_share"],
                 theirs, f"abstract question at op {op}")
    bins = np.array([p.template for p in problems])
    _share_close(np.mean(bins >= 16), n, reference["test_share_released_bins"], theirs, f"test share at op {op}")
    _share_close(np.mean(bins >= 17), n, reference["test_share_paper_bins"], theirs, f"test share (paper) at op {op}")


@pytest.mark.parametrize("kind,rate", [("retry", 0.05), ("retry", 0.5), ("weak", 0.2), ("weak", 0.5)])
def test_retry_data_takes_back_as_many_mistakes_as_released(kind, rate):
    problems = [igsm.generate(20_000 + seed, "med") for seed in range(300)]
    backs = []
    tok = igsm.tokenizer()
    for seed, problem in enumerate(problems):
        ids = problem.solution_tokens(rate, kind, seed=seed)[0]
        backs += [ids.count(tok.back_id) / len(problem.steps)] * len(problem.steps)
    released = REFERENCE["retry_back_per_step_med"][f"{'retry_weak' if kind == 'weak' else 'retry'}@{rate}"]
    released_steps = round(300 * REFERENCE["med"]["solution_steps_mean"])  # the release's 300 problems
    _mean_close(backs, released, released_steps, f"[BACK] per step, {kind} at {rate}")
