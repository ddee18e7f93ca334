"""K models in one step: which configs may share a compiled step, and stacking their states.

Trials that differ only in per-model values (seeds, data order, the pretrained run a fine-tune
starts from, peak learning rate, warmup, weight decay) have identical shapes and code, so they train as one vmapped step over a leading K axis:
each model keeps its own parameters, optimizer state, hyperparameters, data and dropout keys, and
its own checkpoints and metrics in its own workdir, exactly as if it had run alone.
"""
from __future__ import annotations

import json
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import ml_collections

from lmphys import config as config_lib
from lmphys.errors import ConfigError

# Fields that may differ between stacked models; every other field must be equal.
PER_MODEL_FIELDS = (
    "workdir",
    "seed",
    "data_seed",
    "init_from",  # K fine-tunes of K pretrained models share shapes
    "optim.learning_rate",
    "optim.warmup_steps",
    "optim.weight_decay",
)


def shared_fields(config: ml_collections.ConfigDict) -> dict[str, str]:
    """Every field that stacked models must share, as {dotted name: JSON value}."""
    flat = config_lib.flat_fields(config)
    return {name: value for name, value in flat.items() if name not in PER_MODEL_FIELDS}


def shape_key(config: ml_collections.ConfigDict) -> str:
    """Equal for exactly the configs that can train stacked in one step."""
    return json.dumps(shared_fields(config), sort_keys=True)


def check_stackable(configs: Sequence[ml_collections.ConfigDict]) -> None:
    """Raise ConfigError naming the fields that keep `configs` from sharing one step."""
    if not configs:
        raise ConfigError("a stacked job needs at least one config")
    first = shared_fields(configs[0])
    for index, config in enumerate(configs[1:], 1):
        other = shared_fields(config)
        differing = sorted(name for name in first.keys() | other.keys() if first.get(name) != other.get(name))
        if differing:
            raise ConfigError(
                f"configs 0 and {index} cannot train stacked: they differ in {', '.join(differing)} "
                f"(only {', '.join(PER_MODEL_FIELDS)} may differ)"
            )
    workdirs = [config.workdir for config in configs]
    if len(set(workdirs)) != len(workdirs):
        raise ConfigError(f"workdir = {workdirs!r} is invalid: stacked models need one workdir each")


def stack(trees: Sequence[Any]) -> Any:
    """One pytree with a leading K axis on every leaf from K pytrees of the same structure."""
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def unstack(tree: Any, index: int) -> Any:
    """Model `index` of a stacked pytree."""
    return jax.tree.map(lambda leaf: leaf[index], tree)
