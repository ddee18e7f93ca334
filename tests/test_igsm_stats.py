"""lmphys's iGSM against the released generator's statistics (lmphys/worlds/igsm/data/released_stats.json,
measured by running the release; its source is recorded there): op, solution length, world sizes,
depths, items per layer, sentence kinds, answers, question kinds, the test share of both bin
splits, per fixed op, and the retry data's [BACK] rate, all measured by lmphys.worlds.igsm.stats.
Each comparison is a two-sample z-test at |z| < 4.5 (fixed seeds: deterministic), which the
earlier lmphys world (solution steps 10.1 at op 10 against the release's 8.2; "less than" and
"product of" sentences; answers 0 in 7% not 12%) fails by far."""
import math

import numpy as np
import pytest

from lmphys.worlds.igsm import stats

REFERENCE = stats.released()
Z = 4.5


def _share_close(ours: float, n_ours: int, theirs: float, n_theirs: int, what: str) -> None:
    pooled = (ours * n_ours + theirs * n_theirs) / (n_ours + n_theirs)
    sd = math.sqrt(max(pooled * (1 - pooled), 1e-4) * (1 / n_ours + 1 / n_theirs))
    assert abs(ours - theirs) < Z * sd, f"{what}: ours {ours:.4f}, released {theirs:.4f} (sd {sd:.4f})"


def _mean_close(values, theirs: float, n_theirs: int, what: str) -> None:
    values = np.asarray(values, float)
    sd = math.sqrt(max(values.var(), 1e-4) * (1 / len(values) + 1 / n_theirs))
    assert abs(values.mean() - theirs) < Z * sd, f"{what}: ours {values.mean():.3f}, released {theirs:.3f} (sd {sd:.3f})"


@pytest.mark.parametrize("difficulty,count", [("med", 1500), ("hard", 600)])
def test_free_draws_follow_the_released_distributions(difficulty, count):
    ours, reference = stats.measure(stats.sample(difficulty, count)), REFERENCE[difficulty]
    n, theirs = ours["n"], reference["n"]
    _mean_close(ours["op"], reference["op_mean"], theirs, "op")
    _mean_close(ours["solution_steps"], reference["solution_steps_mean"], theirs, "solution steps")
    _mean_close(ours["instance_params"], reference["instance_params_mean"], theirs, "instance params")
    # the layers of one problem are correlated: their shares are tested with n problems, not n layers
    for name in ("depth_share", "items_per_layer_share", "sentence_share", "refs_share"):
        for key, share in reference[name].items():
            _share_close(ours[name][key], n, share, theirs, f"{name} {key}")
    for name in ("answer_zero_share", "question_abstract_share", "random_number_share", "test_share_released_bins",
                 "test_share_paper_bins"):
        _share_close(ours[name], n, reference[name], theirs, name)


@pytest.mark.parametrize("op", [1, 2, 5, 10])
def test_fixed_op_draws_follow_the_released_distributions(op):
    reference = REFERENCE["fixed_op_med"][str(op)]
    ours = stats.measure(stats.sample("med", 300, first_seed=10_000, op=op))
    n, theirs = ours["n"], reference["n"]
    assert set(ours["op"]) == {op}
    _mean_close(ours["solution_steps"], reference["solution_steps_mean"], theirs, f"steps at op {op}")
    for name in ("question_abstract_share", "test_share_released_bins", "test_share_paper_bins"):
        _share_close(ours[name], n, reference[name], theirs, f"{name} at op {op}")


@pytest.mark.parametrize("kind,rate", [("retry", 0.05), ("retry", 0.5), ("weak", 0.2), ("weak", 0.5)])
def test_retry_data_takes_back_as_many_mistakes_as_released(kind, rate):
    backs = stats.back_per_step(stats.sample("med", 300, first_seed=20_000), rate, kind)
    released = REFERENCE["retry_back_per_step_med"][f"{'retry_weak' if kind == 'weak' else 'retry'}@{rate}"]
    released_steps = round(300 * REFERENCE["med"]["solution_steps_mean"])  # the release's 300 problems
    _mean_close(backs, released, released_steps, f"[BACK] per step, {kind} at {rate}")
