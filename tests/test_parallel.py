"""Sharded and stacked training equals the plain single-device computation.

The suite runs on 8 CPU devices (conftest.py): one step sharded over `data`, over `fsdp`, or with
stacked models over `models` must give the single-device result to float tolerance, and the batch
of a step must not depend on how many devices make it.
"""
import jax
import numpy as np
import pytest

from lmphys import parallel
from lmphys.errors import ConfigError
from lmphys.models import transformer
from lmphys.train import optim, stack, step as step_lib
from lmphys.worlds import cfg
from tests.conftest import tiny_config


def _stacked_setup(num_models: int, batch_size: int = 8):
    config = tiny_config("unused")
    config.task.batch_size = batch_size
    config.model.width = 64  # divisible by the fsdp sizes below
    task = cfg.task_from_config(config.task)
    model_cfg = transformer.ModelConfig.from_config(config.model, vocab_size=task.vocab_size)
    optimizer = optim.make_optimizer(config.optim)
    states, graphdef = [], None
    for index in range(num_models):
        config.optim.learning_rate = 1e-3 * (index + 1)  # per-model hyperparameters must follow their model
        graphdef, params = transformer.init_model(model_cfg, jax.random.key(index))
        states.append(step_lib.init_state(params, optimizer, config.optim))
    keys = [stack.stack([jax.random.key(100 + i) for i in range(num_models)]),
            stack.stack([jax.random.key(200 + i) for i in range(num_models)])]
    schedule = optim.Schedule.from_config(config.optim, 10)
    return config, task, graphdef, optimizer, schedule, stack.stack(states), keys


def _train(layout, num_models, steps=3, devices=None):
    config, task, graphdef, optimizer, schedule, state, keys = _stacked_setup(num_models)
    config.parallel.models, config.parallel.data, config.parallel.fsdp = layout
    mesh = parallel.make_mesh(config.parallel, num_models, devices)
    state = parallel.shard_state(mesh, state)
    step_fn = step_lib.make_step_fn(graphdef, optimizer, schedule, task.batch, False, mesh, state)
    losses = []
    for _ in range(steps):
        state, metrics = step_fn(state, *keys)
        losses.append(np.asarray(metrics["loss"]))
    return jax.device_get(state), np.stack(losses), mesh


@pytest.mark.parametrize(
    "layout, num_models",
    [pytest.param((1, 8, 1), 1, marks=pytest.mark.slow), pytest.param((1, 2, 4), 1, marks=pytest.mark.slow),
     pytest.param((1, 1, 8), 1, marks=pytest.mark.slow), pytest.param((2, 4, 1), 2, marks=pytest.mark.slow),
     ((2, 2, 2), 4)],  # the last layout uses all three axes: the one the Python 3.12 leg keeps
    ids=["data", "fsdp+data", "fsdp", "models+data", "models+data+fsdp"],
)
def test_a_sharded_step_equals_the_single_device_step(layout, num_models):
    assert jax.device_count() == 8
    sharded, sharded_losses, mesh = _train(layout, num_models)
    single, single_losses, _ = _train((1, 1, 1), num_models, devices=jax.devices()[:1])
    assert mesh.size == int(np.prod(layout))
    np.testing.assert_allclose(sharded_losses, single_losses, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(sharded), jax.tree.leaves(single)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    # the stacked models really are different models with their own learning rates
    if num_models > 1:
        assert not np.allclose(sharded_losses[:, 0], sharded_losses[:, 1])
        assert not np.allclose(sharded["hparams"]["peak_learning_rate"][0], sharded["hparams"]["peak_learning_rate"][1])


def test_fsdp_shards_every_large_leaf_and_the_models_axis_splits_models():
    config, *_, state, _ = _stacked_setup(num_models=2)
    config.parallel.models, config.parallel.data, config.parallel.fsdp = 2, 1, 4
    mesh = parallel.make_mesh(config.parallel, 2)
    sharded = parallel.shard_state(mesh, state)
    kernel = sharded["params"]["stack"]["blocks"]["mlp_in"]["kernel"]  # [K, layers, 64, 256]
    assert kernel.sharding.spec == jax.P("models", None, None, "fsdp")
    assert kernel.addressable_shards[0].data.shape == (1, 2, 64, 64)
    mu = sharded["opt_state"][1].inner_state[0].mu["stack"]["blocks"]["mlp_in"]["kernel"]
    assert mu.sharding.spec == kernel.sharding.spec  # optimizer moments follow their parameter
    assert sharded["step"].sharding.spec == jax.P("models")


def test_the_batch_of_a_step_is_the_same_on_one_and_on_eight_devices():
    config = tiny_config("unused")
    config.task.batch_size = 16
    task = cfg.task_from_config(config.task)
    key = jax.random.fold_in(jax.random.key(7), 123)
    alone = jax.device_get(jax.jit(task.batch)(key))
    config.parallel.data, config.parallel.fsdp = 4, 2
    mesh = parallel.make_mesh(config.parallel)
    with jax.set_mesh(mesh):
        spread = jax.jit(lambda k: parallel.constrain_rows(task.batch(k)))(key)
    assert len(spread.inputs.sharding.device_set) == 8
    for a, b in zip(alone, jax.device_get(spread)):
        np.testing.assert_array_equal(a, b)


def test_mesh_sizes_are_checked_with_a_clear_message():
    config = tiny_config("unused")
    config.parallel.models, config.parallel.data = 3, -1
    with pytest.raises(ConfigError, match="parallel.models x parallel.fsdp = 3 is invalid"):
        parallel.make_mesh(config.parallel, 3)
    config.parallel.models, config.parallel.data = 2, 1
    with pytest.raises(ConfigError, match="parallel.models = 2 is invalid: it must divide the 3 stacked"):
        parallel.make_mesh(config.parallel, 3)
    config.parallel.models, config.parallel.data = 1, 16
    with pytest.raises(ConfigError, match="at most the 8 devices"):
        parallel.make_mesh(config.parallel, 1)
    config.parallel.data = 8
    with pytest.raises(ConfigError, match="task.batch_size = 4 is invalid"):
        parallel.check_batch(parallel.make_mesh(config.parallel), config.task.batch_size)


def test_each_host_makes_the_block_of_models_and_rows_its_devices_hold():
    config = tiny_config("unused")
    devices = jax.devices()
    # 4 hosts of 2 devices, rows over all 8: host h makes rows 8h .. 8h + 8 of each model.
    config.parallel.models, config.parallel.data = 1, 8
    rows = parallel.stacked_rows_sharding(parallel.make_mesh(config.parallel, 1))
    blocks = [parallel.process_block(rows, (1, 64, 32), devices[2 * host:2 * host + 2]) for host in range(4)]
    assert [(block[1].start, block[1].stop) for block in blocks] == [(0, 16), (16, 32), (32, 48), (48, 64)]
    assert all(block[0] == slice(0, 1) and block[2] == slice(0, 32) for block in blocks)
    # 2 hosts of 4 devices, 2 stacked models over `models`: each host makes all rows of its model.
    config.parallel.models, config.parallel.data = 2, 4
    rows = parallel.stacked_rows_sharding(parallel.make_mesh(config.parallel, 2))
    assert parallel.process_block(rows, (2, 8, 32), devices[4:]) == (slice(1, 2), slice(0, 8), slice(0, 32))
    # one host with every device makes the whole batch
    assert parallel.process_block(rows, (2, 8, 32)) == (slice(0, 2), slice(0, 8), slice(0, 32))
    with pytest.raises(ConfigError, match="not one block"):
        parallel.process_block(rows, (2, 8, 32), [devices[0], devices[5]])


def test_jobs_join_several_processes_only_when_told():
    parallel_cfg = tiny_config("unused").parallel
    assert not parallel.wants_distributed(parallel_cfg, {})
    assert not parallel.wants_distributed(parallel_cfg, {"SLURM_NTASKS": "1", "SLURM_ARRAY_TASK_ID": "3"})
    assert parallel.wants_distributed(parallel_cfg, {"SLURM_NTASKS": "4"})
    assert parallel.wants_distributed(parallel_cfg, {"TPU_WORKER_HOSTNAMES": "t0,t1"})
    parallel_cfg.distributed = "off"
    assert not parallel.wants_distributed(parallel_cfg, {"SLURM_NTASKS": "4"})
    parallel_cfg.distributed = "auto"
    parallel_cfg.coordinator_address = "10.0.0.1:1234"
    assert parallel.wants_distributed(parallel_cfg, {})
