"""K stacked models train exactly as K separate runs; a diverging model loses nothing but the steps
after its last good checkpoint (a crash in the middle of a save: tests/test_faults.py)."""

import jax
import numpy as np
import pytest

from lmphys.errors import ConfigError
from lmphys.train import checkpoint, loop, metrics, runs
from tests.conftest import tiny_config

QUIET = lambda line: None  # noqa: E731


def _member_configs(tmp_path, prefix: str):
    """Three runs that differ in every per-model field."""
    configs = []
    for index, (lr, warmup, decay) in enumerate([(3e-3, 2, 0.1), (1e-2, 0, 0.0), (5e-3, 4, 0.3)]):
        config = tiny_config(str(tmp_path / f"{prefix}{index}"), steps=8)
        config.seed = 10 + index
        config.data_seed = 20 + index if index else -1
        config.optim.learning_rate, config.optim.warmup_steps, config.optim.weight_decay = lr, warmup, decay
        config.model.dropout = 0.1  # per-model dropout keys must follow their model too
        config.train.checkpoint_every = 4
        configs.append(config)
    return configs


def _train_losses(workdir):
    return [record["loss"] for record in metrics.read_metrics(workdir) if record["split"] == "train"]


@pytest.mark.slow
def test_three_stacked_models_train_exactly_as_three_separate_runs(tmp_path):
    stacked = loop.run_group(_member_configs(tmp_path, "stacked"), log=QUIET)
    alone = [loop.run(config, log=QUIET) for config in _member_configs(tmp_path, "alone")]
    for together, separate in zip(stacked, alone):
        assert together.steps == separate.steps == 8 and together.failure is None
        np.testing.assert_allclose(_train_losses(together.workdir), _train_losses(separate.workdir), rtol=1e-5)
        for a, b in zip(jax.tree.leaves(together.state), jax.tree.leaves(separate.state)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)
        assert together.eval_metrics["loss"] == pytest.approx(separate.eval_metrics["loss"], rel=1e-4)
        # each stacked model keeps its own checkpoints, from which it can be loaded alone
        restored = runs.load_trained(together.workdir)
        assert restored.step == 8
        for a, b in zip(jax.tree.leaves(restored.params), jax.tree.leaves(together.state["params"])):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # not vacuous: the three models are different
    assert len({round(summary.final_loss, 6) for summary in stacked}) == 3


def test_configs_that_differ_in_shape_cannot_stack(tmp_path):
    first, second = tiny_config(str(tmp_path / "a")), tiny_config(str(tmp_path / "b"))
    second.model.width = 64
    with pytest.raises(ConfigError, match="differ in model.width"):
        loop.run_group([first, second], log=QUIET)
    with pytest.raises(ConfigError, match="one workdir each"):
        loop.run_group([first, tiny_config(str(tmp_path / "a"))], log=QUIET)


@pytest.mark.slow
def test_a_diverging_model_stops_with_its_last_good_checkpoint_and_the_others_finish(tmp_path):
    healthy = tiny_config(str(tmp_path / "healthy"), steps=6)
    exploding = tiny_config(str(tmp_path / "exploding"), steps=6)
    for config in (healthy, exploding):
        config.optim.warmup_steps = 0
        config.train.checkpoint_every = 1
    exploding.optim.learning_rate = 1e30  # the first update throws the weights to ~1e30
    lines = []
    good, bad = loop.run_group([healthy, exploding], log=lines.append)
    assert good.failure is None and good.steps == 6
    assert bad.failure is not None and "became" in bad.failure and "last good checkpoint is step" in bad.failure
    kept = checkpoint.Checkpointer(bad.workdir, 2)
    last_good = kept.latest_step()
    assert last_good < 6
    restored = kept.restore(last_good, bad.state)  # the final state only gives the structure
    kept.close()
    assert all(np.isfinite(np.asarray(leaf)).all() for leaf in jax.tree.leaves(restored["params"]))
    assert any(bad.failure in line for line in lines)
    # Alone, the same run ends with a one-sentence error instead of a result.
    alone = tiny_config(str(tmp_path / "alone"), steps=6)
    alone.optim.warmup_steps, alone.optim.learning_rate = 0, 1e30
    with pytest.raises(loop.TrainingDiverged, match="NaN|nan|inf"):
        loop.run(alone, log=QUIET)
