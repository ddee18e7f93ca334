"""Optimizers and learning-rate schedules (optax), with per-model hyperparameters as state.

AdamW with the betas, eps and weight decay of the config, global-norm clipping, and a schedule of
linear warmup followed by cosine, linear or constant decay to `final_lr_fraction` of the peak.

K stacked models (DESIGN.md, principle 5) may differ in peak learning rate, warmup and weight
decay, so none of these may be a Python constant of the compiled step. AdamW's numeric
hyperparameters are injected as optimizer state (`optax.inject_hyperparams`), which gives each
stacked model its own weight decay; the peak rate and warmup live in the train state's `hparams`,
and every step writes the scheduled rate into the optimizer state before the update. What is
shared (schedule shape, length, final fraction, betas, clipping) stays static in `Schedule` and
the optimizer.
"""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import ml_collections
import optax

SCHEDULES = ("cosine", "linear", "constant")

# Leaves named like this are gains and offsets: weight decay would only pull them towards zero.
_NO_DECAY_NAMES = ("bias", "scale")


@dataclasses.dataclass(frozen=True)
class Schedule:
    """Linear warmup to the peak, then decay to `final_fraction` of it at `total_steps`.

    The peak and the warmup length are arguments, not fields, because they are per-model state.
    """

    kind: str
    total_steps: int
    final_fraction: float

    @classmethod
    def from_config(cls, optim: ml_collections.ConfigDict, total_steps: int) -> "Schedule":
        return cls(optim.schedule, total_steps, optim.final_lr_fraction)

    def __call__(self, step: jax.Array, peak: jax.Array, warmup_steps: jax.Array) -> jax.Array:
        step = jnp.asarray(step, jnp.float32)
        warmup = jnp.minimum(jnp.asarray(warmup_steps, jnp.float32), self.total_steps)
        warming = peak * step / jnp.maximum(warmup, 1.0)
        progress = jnp.clip((step - warmup) / jnp.maximum(self.total_steps - warmup, 1.0), 0.0, 1.0)
        if self.kind == "cosine":
            shape = 0.5 * (1.0 + jnp.cos(math.pi * progress))
            decayed = peak * (self.final_fraction + (1.0 - self.final_fraction) * shape)
        elif self.kind == "linear":
            decayed = peak * (1.0 - (1.0 - self.final_fraction) * progress)
        else:
            decayed = peak * jnp.ones_like(progress)
        return jnp.where(step < warmup, warming, decayed)


def model_hparams(optim: ml_collections.ConfigDict) -> dict[str, jax.Array]:
    """The schedule's per-model values, kept in the train state."""
    return {
        "peak_learning_rate": jnp.asarray(optim.learning_rate, jnp.float32),
        "warmup_steps": jnp.asarray(optim.warmup_steps, jnp.int32),
    }


def _decay_mask(params):
    """True for matrices and embeddings, False for biases and norm scales."""

    def decays(path, _leaf) -> bool:
        name = str(getattr(path[-1], "key", getattr(path[-1], "name", path[-1])))
        return name not in _NO_DECAY_NAMES

    return jax.tree_util.tree_map_with_path(decays, params)


def make_optimizer(optim: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """AdamW with clipping. The learning rate starts at the peak; `with_learning_rate` sets the
    scheduled value before each update."""
    # `mask` is a function of the params, not a number: keep it out of the injected state.
    adamw = optax.inject_hyperparams(optax.adamw, static_args=("mask",))(
        learning_rate=optim.learning_rate,
        b1=optim.b1,
        b2=optim.b2,
        eps=optim.eps,
        weight_decay=optim.weight_decay,
        mask=_decay_mask,
    )
    if optim.grad_clip > 0:
        return optax.chain(optax.clip_by_global_norm(optim.grad_clip), adamw)
    return adamw


def _is_injected(node) -> bool:
    return hasattr(node, "hyperparams") and hasattr(node, "_replace")


def with_learning_rate(opt_state, learning_rate: jax.Array):
    """`opt_state` with the injected learning rate replaced by `learning_rate`."""

    def replace(node):
        if not _is_injected(node):
            return node
        current = node.hyperparams["learning_rate"]
        hyperparams = dict(node.hyperparams, learning_rate=jnp.asarray(learning_rate, current.dtype))
        return node._replace(hyperparams=hyperparams)

    return jax.tree.map(replace, opt_state, is_leaf=_is_injected)
