"""GPU-hour estimates of sweeps (lmphys/cost.py, `scripts/sweep.py --estimate`): the rate is the
PyTorch peer's measured H100 FLOP rate, a trial's size is the model it would train, and a trial that
would fail at its start is reported instead of costed."""
import os
import subprocess
import sys

import jax
import pytest

from lmphys import config as config_lib
from lmphys import cost, perf
from lmphys.models import sizes, transformer
from lmphys.train import runs
from tests.conftest import REPO, tiny_config


def test_the_rate_is_the_peers_at_each_reference_width_and_in_between_elsewhere():
    rates = cost.reference_rates()
    assert len(rates) >= 3 and [width for width, _ in rates] == sorted({s.width for s in perf.REFERENCE_SHAPES
                                                                           if s.baseline_tokens_per_s})
    for width, rate in rates:
        assert cost.flop_rate(width) == pytest.approx(rate)
    (low, low_rate), (high, high_rate) = rates[0], rates[1]
    middle = cost.flop_rate((low + high) // 2)
    assert min(low_rate, high_rate) < middle < max(low_rate, high_rate)
    assert cost.flop_rate(8) == rates[0][1] and cost.flop_rate(100_000) == rates[-1][1]
    # The 12/768 row: 692k tokens/s of nanoGPT times that shape's FLOPs per token.
    shape = next(s for s in perf.REFERENCE_SHAPES if s.name == "12/768")
    per_token = sizes.flops_per_token(perf.model_config(shape, perf.Levers()), shape.seq_len)
    assert cost.flop_rate(768) == pytest.approx(692e3 * per_token, rel=0.05)


def test_a_trials_cost_counts_the_model_it_would_train_and_its_tokens():
    config = tiny_config("unused", steps=40)
    estimate = cost.trial_cost("tiny", config)
    assert estimate.error is None and estimate.waits_on is None
    parts = runs.build(config)
    built = transformer.init_model(parts.model_cfg, jax.random.key(0))[1]
    assert estimate.params == sizes.num_params(built)
    assert estimate.tokens == 40 * config.task.batch_size * config.task.seq_len
    assert estimate.flops == pytest.approx(estimate.tokens * sizes.flops_per_token(parts.model_cfg, config.task.seq_len))
    assert estimate.hours == pytest.approx(estimate.flops / cost.flop_rate(config.model.width) / 3600)


def test_a_task_that_sets_its_own_steps_is_costed_for_the_steps_it_will_train():
    # Exposures (Part 3) set train.steps at the start of training; the estimate counts those.
    config = config_lib.load_config_file(os.path.join(REPO, "configs", "bio", "small.py"), "pretrain,multi5_permute")
    estimate = cost.trial_cost("bio", config)
    trained = runs.build_task(config).train_steps(config.train.steps)
    assert trained != config.train.steps and estimate.steps == trained
    assert estimate.tokens == trained * config.task.batch_size * config.task.seq_len


def test_a_fine_tune_of_a_run_not_trained_yet_is_costed_and_flagged(tmp_path):
    config = tiny_config("unused", steps=10)
    config.init_from = str(tmp_path / "pretrain")
    estimate = cost.trial_cost("finetune", config)
    assert estimate.error is None and estimate.waits_on == str(tmp_path / "pretrain") and estimate.hours > 0
    assert "1 start from runs not trained yet" in cost.lines([estimate])[-1]


def test_estimate_lists_every_trial_and_names_the_invalid_one():
    done = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "sweep.py"),
                           f"--config={os.path.join(REPO, 'tests', 'tiny_run.py')}:sweep", "--estimate"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    rows = done.stdout.splitlines()
    assert len(rows) == 1 + 6 + 1, done.stdout  # header, six trials, total
    invalid = [row for row in rows if "invalid:" in row]
    assert len(invalid) == 2 and all("model.num_heads = 3 is invalid" in row for row in invalid), done.stdout
    assert rows[-1].startswith("4 trials, ") and "H100 hours" in rows[-1] and rows[-1].endswith("; 2 invalid")
