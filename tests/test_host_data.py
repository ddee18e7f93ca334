"""Host-made data (train/host_data.py): batch s is a function of (data seed, s) alone, whatever the
number of worker processes; a run fed by the host resumes bit-identically, stacked models each get
their own stream, and a worker's failure surfaces as an error naming the step."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmphys import parallel, worlds
from lmphys.errors import DataError
from lmphys.models import transformer
from lmphys.train import host_data, loop, metrics, optim, stack, step as step_lib
from lmphys.worlds.base import Batch, causal_lm_batch
from tests.conftest import tiny_config

QUIET = lambda line: None  # noqa: E731


class CountingTask:
    """Rows that count up (mod the vocabulary) from a random start: numpy only, picklable, learnable."""

    vocab_size, bos_id, eos_id, pad_id = 16, 0, 1, 2
    first_token = 3

    def __init__(self, batch_size: int, seq_len: int, data_workers: int = 0, fail_at_step: int | None = None):
        self.batch_size, self.seq_len = batch_size, seq_len
        self.data_workers = data_workers
        self.fail_at_step = fail_at_step

    def host_batch(self, seed: int, step: int, held_out: bool = False) -> Batch:
        if step == self.fail_at_step:
            raise ValueError(f"no problem could be built for step {step}")
        rng = np.random.default_rng([seed, step, int(held_out)])
        span = self.vocab_size - self.first_token
        starts = rng.integers(0, span, size=(self.batch_size, 1))
        rows = self.first_token + (starts + np.arange(self.seq_len + 1)) % span
        return Batch(rows[:, :-1], rows[:, 1:], np.ones((self.batch_size, self.seq_len), np.float32))

    def evaluate(self, model, key) -> dict[str, float]:
        return {}


# This module is also the "counting" world (lmphys.worlds' contract) while counting_config is in use.
def task_from_config(task_config) -> CountingTask:
    return CountingTask(task_config.batch_size, task_config.seq_len)


def validate_config(config) -> None:
    """Every field of the stand-in world is valid."""


ANALYSES = {}


@pytest.fixture
def counting_config(monkeypatch, tmp_path):
    """Configs of tiny runs on CountingTask, registered as a world."""
    monkeypatch.setitem(worlds.WORLDS, "counting", __name__)

    def make(name: str, data_seed: int = -1, steps: int = 8):
        config = tiny_config(str(tmp_path / name), steps)
        config.task.name = "counting"
        config.data_seed = data_seed
        config.model.dropout = 0.1  # dropout keys must still follow each model's step
        return config

    return make


def _train_losses(workdir):
    return [record["loss"] for record in metrics.read_metrics(workdir) if record["split"] == "train"]


def _assert_batches_equal(a: Batch, b: Batch):
    for x, y in zip(a, b):
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)


def test_worker_processes_give_the_batches_of_the_calling_thread_from_any_start_step():
    task = CountingTask(batch_size=4, seq_len=8, data_workers=2)
    seeds = [7, 8]
    with host_data.HostBatches(task, seeds, start_step=0, workers=0) as inline:
        expected = {step: inline.get(step) for step in range(12)}
    assert expected[0].inputs.shape == (2, 4, 8) and expected[0].inputs.dtype == np.int32
    assert expected[0].loss_mask.dtype == np.float32
    assert not np.array_equal(expected[0].inputs[0], expected[0].inputs[1])  # one stream per seed
    assert not np.array_equal(expected[0].inputs, expected[1].inputs)  # and a batch per step
    with host_data.HostBatches(task, seeds, start_step=2, workers=2, prefetch=3) as pooled:
        for step in (2, 3, 4, 5, 7, 11):  # a resumed run starts late; skipped steps are dropped
            _assert_batches_equal(pooled.get(step), expected[step])


def test_a_worker_failure_names_its_step_instead_of_hanging():
    failing = CountingTask(batch_size=2, seq_len=4, fail_at_step=3)
    for workers in (0, 1):
        with host_data.HostBatches(failing, [0], start_step=0, workers=workers) as batches:
            for step in range(3):
                batches.get(step)
            with pytest.raises(host_data.HostDataError, match="step 3 failed: ValueError: no problem could be built"):
                batches.get(3)


def test_a_task_that_cannot_be_pickled_is_refused_before_any_worker_starts():
    class Local(CountingTask):  # a class inside a function cannot be pickled
        pass

    with pytest.raises(DataError, match="must be picklable"):
        host_data.HostBatches(Local(2, 4), [0], start_step=0, workers=2)


@pytest.mark.slow
def test_host_fed_runs_resume_exactly_and_stacked_ones_train_as_they_would_alone(counting_config):
    alone = [loop.run(counting_config(f"alone{seed}", data_seed=seed), log=QUIET) for seed in (5, 6)]
    losses = _train_losses(alone[0].workdir)
    assert losses[-1] < losses[0]  # not vacuous: the model learns from the host batches
    assert set(alone[0].eval_metrics) >= {"loss", "token_accuracy"}  # evaluated on the held-out stream

    first = loop.run(counting_config("pieces", data_seed=5), stop_at_step=3, log=QUIET)
    assert first.stopped_early and first.steps == 3
    lines = []
    resumed = loop.run(counting_config("pieces", data_seed=5), log=lines.append)
    assert any("resumed from step 3" in line for line in lines) and resumed.steps == 8
    assert _train_losses(resumed.workdir) == losses
    for a, b in zip(jax.tree.leaves(jax.device_get(resumed.state)), jax.tree.leaves(jax.device_get(alone[0].state))):
        np.testing.assert_array_equal(a, b)

    group = [counting_config("stacked5", data_seed=5), counting_config("stacked6", data_seed=6)]
    for config in group:  # host batches enter the step sharded: K over models, rows over data x fsdp
        config.parallel.models, config.parallel.data, config.parallel.fsdp = 2, 2, 2
    stacked = loop.run_group(group, log=QUIET)
    for together, separate in zip(stacked, alone):
        np.testing.assert_allclose(_train_losses(together.workdir), _train_losses(separate.workdir), rtol=1e-5)
        for a, b in zip(jax.tree.leaves(together.state), jax.tree.leaves(separate.state)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)
    # same seed (same init), different data seeds: the first batches, hence losses, differ
    assert _train_losses(stacked[0].workdir)[0] != _train_losses(stacked[1].workdir)[0]


STEPS = 3
DATA_KEYS = stack.stack([jax.random.key(10), jax.random.key(11)])
DROPOUT_KEYS = stack.stack([jax.random.key(20), jax.random.key(21)])


def _counting_batch_on_device(key: jax.Array) -> Batch:
    """CountingTask's rows made by jax, to run inside the step (a cheap stand-in for the cfg world)."""
    span = CountingTask.vocab_size - CountingTask.first_token
    starts = jax.random.randint(key, (8, 1), 0, span)
    return causal_lm_batch(CountingTask.first_token + (starts + jnp.arange(33)) % span)


def _run_steps(host_batches: list[Batch] | None):
    """Steps of two stacked models on one device, with batches made in the step or handed to it."""
    config = tiny_config("unused")
    model_cfg = transformer.ModelConfig.from_config(config.model, vocab_size=CountingTask.vocab_size)
    optimizer = optim.make_optimizer(config.optim)
    graphdef, params = transformer.init_model(model_cfg, jax.random.key(0))
    mesh = parallel.make_mesh(config.parallel, 2, jax.devices()[:1])
    state = parallel.shard_state(mesh, stack.stack([step_lib.init_state(params, optimizer, config.optim)] * 2))
    step_fn = step_lib.make_step_fn(graphdef, optimizer, optim.Schedule.from_config(config.optim, 10),
                                    _counting_batch_on_device, True, mesh, state, host_batches=host_batches is not None)
    for step in range(STEPS):
        if host_batches is None:
            state, _ = step_fn(state, DATA_KEYS, DROPOUT_KEYS)
        else:
            batch = jax.device_put(host_batches[step], parallel.stacked_rows_sharding(mesh))
            state, _ = step_fn(state, DATA_KEYS, DROPOUT_KEYS, batch)
    return jax.device_get(state)


@pytest.mark.slow
def test_a_step_fed_batches_equals_the_step_that_makes_them():
    made_inside = _run_steps(host_batches=None)
    # the batches that step made, made outside it and brought to the host
    make = jax.jit(jax.vmap(lambda key, step: _counting_batch_on_device(jax.random.fold_in(key, step)), in_axes=(0, None)))
    fed = _run_steps([jax.device_get(make(DATA_KEYS, step)) for step in range(STEPS)])
    for a, b in zip(jax.tree.leaves(made_inside), jax.tree.leaves(fed)):
        np.testing.assert_array_equal(a, b)
