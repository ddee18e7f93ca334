"""Pure init / train / eval steps over pytrees, and the jitted, sharded step of K stacked models.

The training state of one model is a plain dict pytree `{"step", "params", "opt_state", "hparams"}`:
params are the model's parameters as nested dicts of arrays (`nnx.to_pure_dict`), applied through
`nnx.merge(graphdef, ...)` inside jit; hparams are the model's own schedule values (optim.py).
A LoRA fine-tune (lora.py) adds `"frozen"`, the pretrained parameters: then `params` holds only the
trained low-rank factors, and `model_params(state)` is what the model runs with.
Nothing here holds Python state, so the same functions are vmapped over K stacked models, sharded
over a mesh and checkpointed as they are.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx
from jax.sharding import Mesh

from lmphys import parallel
from lmphys.models import transformer
from lmphys.train import lora, optim
from lmphys.worlds.base import Batch

TrainState = dict[str, Any]
Metrics = dict[str, jax.Array]
# (stacked states, data keys [K], dropout keys [K]) -> (stacked states, metrics of shape [K]);
# a step fed by host batches takes a fourth argument, the stacked `Batch` [K, B, T].
StepFn = Callable[..., tuple[TrainState, Metrics]]


def init_state(
    params: dict, optimizer: optax.GradientTransformation, optim_cfg: ml_collections.ConfigDict, frozen: dict | None = None
) -> TrainState:
    """A fresh state; with `frozen` (a LoRA fine-tune) `params` are the low-rank factors."""
    state = {
        "step": jnp.zeros((), jnp.int32),
        "params": params,
        "opt_state": optimizer.init(params),
        "hparams": optim.model_hparams(optim_cfg),
    }
    if frozen is not None:
        state["frozen"] = frozen
    return state


def model_params(state: TrainState) -> dict:
    """The parameters the model runs with: the trained ones, or frozen + low-rank updates."""
    return lora.merge(state["frozen"], state["params"]) if "frozen" in state else state["params"]


def loss_and_metrics(
    graphdef: nnx.GraphDef, params: dict, batch: Batch, dropout_key: jax.Array | None
) -> tuple[jax.Array, Metrics]:
    """Mean cross-entropy over the positions where `loss_mask` is 1, and token accuracy there."""
    logits_BTV = transformer.apply(graphdef, params, batch.inputs, dropout_key=dropout_key)
    losses_BT = optax.softmax_cross_entropy_with_integer_labels(logits_BTV, batch.targets)
    mask_BT = batch.loss_mask.astype(jnp.float32)
    num_tokens = jnp.maximum(mask_BT.sum(), 1.0)
    loss = (losses_BT * mask_BT).sum() / num_tokens
    correct_BT = (jnp.argmax(logits_BTV, axis=-1) == batch.targets).astype(jnp.float32)
    accuracy = (correct_BT * mask_BT).sum() / num_tokens
    return loss, {"loss": loss, "token_accuracy": accuracy, "loss_tokens": mask_BT.sum()}


def train_step(
    graphdef: nnx.GraphDef,
    optimizer: optax.GradientTransformation,
    schedule: optim.Schedule,
    state: TrainState,
    batch: Batch,
    dropout_key: jax.Array | None,
) -> tuple[TrainState, Metrics]:
    """One AdamW update of one model on one batch, at the model's own scheduled learning rate."""
    hparams = state["hparams"]
    learning_rate = schedule(state["step"], hparams["peak_learning_rate"], hparams["warmup_steps"])
    opt_state = optim.with_learning_rate(state["opt_state"], learning_rate)

    def loss_fn(trained: dict):
        return loss_and_metrics(graphdef, model_params({**state, "params": trained}), batch, dropout_key)

    (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
    updates, opt_state = optimizer.update(grads, opt_state, state["params"])
    params = optax.apply_updates(state["params"], updates)
    metrics["grad_norm"] = optax.tree.norm(grads)
    metrics["learning_rate"] = learning_rate
    new_state = {**state, "step": state["step"] + 1, "params": params, "opt_state": opt_state}
    return new_state, metrics


def eval_step(graphdef: nnx.GraphDef, params: dict, batch: Batch) -> Metrics:
    """Loss and token accuracy without dropout."""
    return loss_and_metrics(graphdef, params, batch, None)[1]


def batch_at_step(make_batch: Callable[..., Batch], data_key: jax.Array, step: jax.Array | int, data: Any = None) -> Batch:
    """Batch `step` of the data stream `data_key`, as the on-device train step makes it: the task's
    `batch` on the key folded with the step (and the task's `data`, when it has some)."""
    key = jax.random.fold_in(data_key, step)
    return make_batch(key) if data is None else make_batch(key, data)


def make_step_fn(
    graphdef: nnx.GraphDef,
    optimizer: optax.GradientTransformation,
    schedule: optim.Schedule,
    make_batch: Callable[..., Batch] | None,
    use_dropout: bool,
    mesh: Mesh,
    stacked_state: TrainState,
    task_data: Any = None,
    *,
    host_batches: bool = False,
) -> StepFn:
    """The jitted step of K stacked models on `mesh`: each model makes its batch on device from
    (its data key, its step), then takes one update; the states are donated.

    Data and dropout keys are folded with each state's own step counter, so a resumed run replays
    exactly the batches and dropout masks of an uninterrupted one. `stacked_state` (arrays or
    shapes) fixes the state's shardings. `task_data` (a pytree of arrays, e.g. a packed corpus) is
    passed to `make_batch(key, task_data)` as a replicated argument of the step rather than baked
    into the compiled program as a constant.

    With `host_batches` the batches are made outside the step (host_data.py): the step takes a
    fourth argument, a `Batch` of [K, B, T] arrays (placed with `parallel.stacked_rows_sharding`),
    and neither `make_batch` nor the data keys are used.

    The on-device step also has `.compile(states, data_keys, dropout_keys)`: the same program
    compiled ahead of time, as a callable that carries `.compiled` (HLO text, memory and cost
    analyses; what lmphys/perf.py measures).
    """
    state_sharding = parallel.state_shardings(mesh, stacked_state)
    per_model = parallel.per_model_sharding(mesh)

    def update(state: TrainState, batch: Batch, dropout_key: jax.Array):
        step_dropout_key = jax.random.fold_in(dropout_key, state["step"]) if use_dropout else None
        return train_step(graphdef, optimizer, schedule, state, parallel.constrain_rows(batch), step_dropout_key)

    if host_batches:
        def host_step_fn(states: TrainState, dropout_keys: jax.Array, batches: Batch):
            return jax.vmap(update, in_axes=(0, 0, 0), spmd_axis_name="models")(states, batches, dropout_keys)

        host_jitted = jax.jit(
            host_step_fn,
            in_shardings=(state_sharding, per_model, parallel.stacked_rows_sharding(mesh)),
            out_shardings=(state_sharding, per_model),
            donate_argnums=0,
        )

        def run_host_batches_on_mesh(states, data_keys, dropout_keys, batch):
            with jax.set_mesh(mesh):
                return host_jitted(states, dropout_keys, batch)

        return run_host_batches_on_mesh

    if task_data is not None:
        task_data = jax.device_put(task_data, parallel.replicated(mesh))

    def one_model(state: TrainState, data_key: jax.Array, dropout_key: jax.Array, data: Any):
        return update(state, batch_at_step(make_batch, data_key, state["step"], data), dropout_key)

    def step_fn(states: TrainState, data_keys: jax.Array, dropout_keys: jax.Array, data: Any):
        return jax.vmap(one_model, in_axes=(0, 0, 0, None), spmd_axis_name="models")(states, data_keys, dropout_keys, data)

    jitted = jax.jit(
        step_fn,
        in_shardings=(state_sharding, per_model, per_model, parallel.replicated(mesh)),
        out_shardings=(state_sharding, per_model),
        donate_argnums=0,
    )

    def run_on_mesh(states, data_keys, dropout_keys):
        with jax.set_mesh(mesh):  # the bare PartitionSpecs of constrain_rows refer to this mesh
            return jitted(states, data_keys, dropout_keys, task_data)

    def compile_on_mesh(states, data_keys, dropout_keys) -> Callable[..., tuple[TrainState, Metrics]]:
        """The compiled program (for its HLO, memory and cost analyses: lmphys/perf.py), callable
        with the same arguments as the step."""
        with jax.set_mesh(mesh):
            compiled = jitted.lower(states, data_keys, dropout_keys, task_data).compile()

        def run_compiled(states, data_keys, dropout_keys):
            with jax.set_mesh(mesh):
                return compiled(states, data_keys, dropout_keys, task_data)

        run_compiled.compiled = compiled
        return run_compiled

    run_on_mesh.compile = compile_on_mesh
    return run_on_mesh


def finite_models(params: dict) -> jax.Array:
    """[K] booleans: whether every parameter of each stacked model is finite."""
    leaves = [jnp.isfinite(leaf).reshape(leaf.shape[0], -1).all(axis=1) for leaf in jax.tree.leaves(params)]
    return jnp.stack(leaves).all(axis=0)
