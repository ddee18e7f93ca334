"""Optimizers and learning-rate schedules (optax).

AdamW with the betas, eps and weight decay of the config, global-norm clipping, and a schedule of
linear warmup followed by cosine, linear or constant decay to `final_lr_fraction` of the peak. The
hyperparameters are injected as optimizer state (`optax.inject_hyperparams`) so K stacked models can
carry K learning rates later (DESIGN.md, principle 5).
"""
from __future__ import annotations

import jax
import ml_collections
import optax

SCHEDULES = ("cosine", "linear", "constant")

# Leaves named like this are gains and offsets: weight decay would only pull them towards zero.
_NO_DECAY_NAMES = ("bias", "scale")


def learning_rate_schedule(optim: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
    """Linear warmup to `learning_rate`, then decay to `final_lr_fraction` of it at `total_steps`."""
    peak = optim.learning_rate
    final = peak * optim.final_lr_fraction
    warmup = min(optim.warmup_steps, total_steps)
    decay_steps = max(total_steps - warmup, 1)
    if optim.schedule == "cosine":
        decay = optax.cosine_decay_schedule(peak, decay_steps, alpha=optim.final_lr_fraction)
    elif optim.schedule == "linear":
        decay = optax.linear_schedule(peak, final, decay_steps)
    else:
        decay = optax.constant_schedule(peak)
    if warmup == 0:
        return decay
    return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), decay], [warmup])


def _decay_mask(params):
    """True for matrices and embeddings, False for biases and norm scales."""

    def decays(path, _leaf) -> bool:
        name = str(getattr(path[-1], "key", getattr(path[-1], "name", path[-1])))
        return name not in _NO_DECAY_NAMES

    return jax.tree_util.tree_map_with_path(decays, params)


def make_optimizer(optim: ml_collections.ConfigDict, total_steps: int) -> optax.GradientTransformation:
    """AdamW with clipping and the configured schedule."""
    # `mask` is a function of the params, not of the step: keep it out of the injected schedules.
    adamw = optax.inject_hyperparams(optax.adamw, static_args=("mask",))(
        learning_rate=learning_rate_schedule(optim, total_steps),
        b1=optim.b1,
        b2=optim.b2,
        eps=optim.eps,
        weight_decay=optim.weight_decay,
        mask=_decay_mask,
    )
    if optim.grad_clip > 0:
        return optax.chain(optax.clip_by_global_norm(optim.grad_clip), adamw)
    return adamw
