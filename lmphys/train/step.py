"""Pure init / train / eval steps over pytrees.

The training state is a plain dict pytree `{"step", "params", "opt_state"}`: params are the model's
parameters as nested dicts of arrays (`nnx.to_pure_dict`), applied through `nnx.merge(graphdef, ...)`
inside jit. Nothing here holds Python state, so the same functions can be jitted, vmapped over K
stacked models, sharded, and checkpointed as they are.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from lmphys.models import transformer
from lmphys.tasks.base import Batch

TrainState = dict[str, Any]
Metrics = dict[str, jax.Array]


def init_model(model_cfg: transformer.ModelConfig, key: jax.Array) -> tuple[nnx.GraphDef, dict]:
    """Build the model and return its graph definition and its parameters as a pure dict."""
    model = transformer.build_model(model_cfg, key)
    graphdef, state = nnx.split(model)
    return graphdef, nnx.to_pure_dict(state)


def init_state(params: dict, optimizer: optax.GradientTransformation) -> TrainState:
    return {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": optimizer.init(params)}


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
    state: TrainState,
    batch: Batch,
    dropout_key: jax.Array | None,
) -> tuple[TrainState, Metrics]:
    """One AdamW update on one batch."""
    grad_fn = jax.value_and_grad(loss_and_metrics, argnums=1, has_aux=True)
    (_, metrics), grads = grad_fn(graphdef, state["params"], batch, dropout_key)
    updates, opt_state = optimizer.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    metrics["grad_norm"] = optax.tree.norm(grads)
    metrics["learning_rate"] = current_learning_rate(opt_state)
    return {"step": state["step"] + 1, "params": params, "opt_state": opt_state}, metrics


def eval_step(graphdef: nnx.GraphDef, params: dict, batch: Batch) -> Metrics:
    """Loss and token accuracy without dropout."""
    return loss_and_metrics(graphdef, params, batch, None)[1]


def current_learning_rate(opt_state: Any) -> jax.Array:
    """The learning rate `inject_hyperparams` used for the latest update."""
    for leaf in jax.tree_util.tree_leaves(opt_state, is_leaf=lambda x: hasattr(x, "hyperparams")):
        if hasattr(leaf, "hyperparams"):
            return leaf.hyperparams["learning_rate"]
    raise ValueError("the optimizer state carries no injected learning rate")


def make_step_fn(
    graphdef: nnx.GraphDef,
    optimizer: optax.GradientTransformation,
    make_batch: Callable[[jax.Array], Batch],
    data_key: jax.Array,
    dropout_key: jax.Array,
    use_dropout: bool,
) -> Callable[[TrainState], tuple[TrainState, Metrics]]:
    """The jitted step of a run: batch s is made on device from (data_key, s), then one update.

    Data and dropout keys are folded from the run's keys and the state's own step counter, so a
    resumed run replays exactly the batches and dropout masks of an uninterrupted one.
    """

    def step_fn(state: TrainState) -> tuple[TrainState, Metrics]:
        batch = make_batch(jax.random.fold_in(data_key, state["step"]))
        step_dropout_key = jax.random.fold_in(dropout_key, state["step"]) if use_dropout else None
        return train_step(graphdef, optimizer, state, batch, step_dropout_key)

    return jax.jit(step_fn, donate_argnums=0)
