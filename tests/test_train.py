"""The training side: schedules, loss masks, a falling loss, and bit-exact resume."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lmphys.models import transformer
from lmphys.train import loop, metrics, optim, step as step_lib
from lmphys.worlds.base import Batch


def test_schedule_warms_up_then_decays_to_the_final_fraction(make_tiny_config):
    config = make_tiny_config()
    config.optim.warmup_steps = 10
    config.optim.final_lr_fraction = 0.1
    peak = config.optim.learning_rate
    # optax's own schedules with the same settings, as an independent reference
    decays = {
        "cosine": optax.cosine_decay_schedule(peak, 90, alpha=0.1),
        "linear": optax.linear_schedule(peak, 0.1 * peak, 90),
        "constant": optax.constant_schedule(peak),
    }
    for kind in optim.SCHEDULES:
        config.optim.schedule = kind
        schedule = optim.Schedule.from_config(config.optim, 100)
        at = lambda step: float(schedule(step, peak, config.optim.warmup_steps))
        assert at(0) == 0.0
        assert at(5) == pytest.approx(peak / 2)
        assert at(10) == pytest.approx(peak)
        final = peak if kind == "constant" else 0.1 * peak
        assert at(100) == pytest.approx(final, rel=1e-5)
        reference = optax.join_schedules([optax.linear_schedule(0.0, peak, 10), decays[kind]], [10])
        for step in (3, 17, 50, 99):
            assert at(step) == pytest.approx(float(reference(step)), rel=1e-5)


def test_weight_decay_skips_biases_and_norm_scales(make_tiny_config):
    config = make_tiny_config().optim
    config.warmup_steps = 0
    tx = optim.make_optimizer(config)
    params = {"dense": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}, "norm": {"scale": jnp.ones(2)}}
    state = tx.init(params)
    zero_grads = jax.tree.map(jnp.zeros_like, params)
    for _ in range(3):
        updates, state = tx.update(zero_grads, state, params)
    assert np.all(np.asarray(updates["dense"]["kernel"]) < 0)  # decayed towards zero
    assert np.all(np.asarray(updates["dense"]["bias"]) == 0)
    assert np.all(np.asarray(updates["norm"]["scale"]) == 0)


def test_loss_ignores_masked_positions(make_tiny_config):
    config = make_tiny_config()
    model_cfg = transformer.ModelConfig.from_config(config.model, vocab_size=8)
    graphdef, params = transformer.init_model(model_cfg, jax.random.key(0))
    inputs = jax.random.randint(jax.random.key(1), (2, 16), 1, 8)
    targets = jax.random.randint(jax.random.key(2), (2, 16), 1, 8)
    mask = jnp.zeros((2, 16)).at[:, :8].set(1.0)
    loss, _ = step_lib.loss_and_metrics(graphdef, params, Batch(inputs, targets, mask), None)
    changed = targets.at[:, 8:].set(0)
    loss_changed, _ = step_lib.loss_and_metrics(graphdef, params, Batch(inputs, changed, mask), None)
    assert float(loss) == float(loss_changed)
    loss_unmasked, _ = step_lib.loss_and_metrics(
        graphdef, params, Batch(inputs, changed, jnp.ones((2, 16))), None
    )
    assert float(loss_unmasked) != float(loss)


def test_train_loss_falls_on_a_tiny_run(make_tiny_config):
    config = make_tiny_config(steps=60)
    config.optim.learning_rate = 1e-2
    summary = loop.run(config, log=lambda line: None)
    losses = [r["loss"] for r in metrics.read_metrics(summary.workdir) if r["split"] == "train"]
    assert len(losses) >= 50
    assert np.mean(losses[-10:]) < 0.8 * np.mean(losses[:5])
    assert "gen_accuracy" in summary.eval_metrics


def test_resumed_run_is_bit_identical_to_an_uninterrupted_one(make_tiny_config):
    def config(name):
        run_config = make_tiny_config(steps=12, name=name)
        run_config.model.dropout = 0.1  # dropout masks must replay exactly too
        return run_config

    quiet = lambda line: None
    reference = loop.run(config("uninterrupted"), log=quiet)
    first = loop.run(config("pieces"), stop_at_step=5, log=quiet)
    assert first.stopped_early and first.steps == 5
    halfway_params = jax.tree_util.tree_leaves(jax.device_get(first.state["params"]))
    lines = []
    second = loop.run(config("pieces"), log=lines.append)
    assert any("resumed from step 5" in line for line in lines)
    assert second.steps == 12 and not second.stopped_early

    resumed = jax.tree_util.tree_leaves(jax.device_get(second.state))
    uninterrupted = jax.tree_util.tree_leaves(jax.device_get(reference.state))
    assert len(resumed) == len(uninterrupted)
    for a, b in zip(resumed, uninterrupted):
        np.testing.assert_array_equal(a, b)
    # The comparison is not vacuous: training moved the parameters after the restart.
    final_params = jax.tree_util.tree_leaves(jax.device_get(second.state["params"]))
    assert any(not np.array_equal(a, b) for a, b in zip(halfway_params, final_params))

    steps = [r["step"] for r in metrics.read_metrics(second.workdir) if r["split"] == "train"]
    assert steps == sorted(set(steps)), "the resumed run wrote some steps twice"
    assert steps[-1] == 12


def test_rerunning_a_finished_run_reports_its_results_without_training(make_tiny_config):
    config = make_tiny_config(steps=4)
    first = loop.run(config, log=lambda line: None)
    lines = []
    again = loop.run(config, log=lines.append)
    assert again.steps == 4 and not any(line.startswith("step ") for line in lines)
    assert again.eval_metrics == pytest.approx(first.eval_metrics)
