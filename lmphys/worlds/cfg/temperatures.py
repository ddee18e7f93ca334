"""Part 1's robustness read at low sampling temperatures (the sweep analysis "low_temperature").

The paper compares clean- and perturbed-trained models at temperatures 0.1, 0.2 and 1.0: a model
trained on perturbed strings reproduces their noise when it samples at 1.0, and corrects a corrupted
prefix only when it samples near its argmax. The loop evaluates at `task.temperature` (1.0 by
default); this analysis completes the same held-out clean and corrupted prefixes at each lower
temperature (with sampling keys of its own, the same for every run), so the rows of a robustness
sweep carry every temperature.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp

from lmphys.errors import ConfigError
from lmphys.models import decode, transformer
from lmphys.worlds.base import ModelFns

PAPER_TEMPERATURES = (0.1, 0.2)  # beside the loop's own 1.0
_KEY_SEED = 1  # one fixed key for every run, so two models are scored on the same completions' draws


def analyze_run(task: Any, graphdef: Any, params: Any, *,
                temperatures: Sequence[float] = PAPER_TEMPERATURES) -> dict[str, Any]:
    """{"T=<t>": {"cut_accuracy": ..., "corrupted_cut_accuracy": ...}} for each temperature t, of the
    model (graphdef, params) sampling at t (see `accuracies_at`)."""
    if task.objective != "lm":
        raise ConfigError("analyses = ('low_temperature',) needs a decoder (task.objective = 'lm'): "
                          "an encoder does not complete prefixes")
    log_probs = jax.jit(lambda params, tokens: jax.nn.log_softmax(transformer.apply(graphdef, params, tokens)))
    sample = jax.jit(functools.partial(decode.generate, graphdef, eos_id=task.eos_id))  # temperature traced: one compile

    def model_at(temperature: float) -> ModelFns:
        return ModelFns(sample=functools.partial(sample, params, temperature=jnp.float32(temperature)),
                        log_probs=functools.partial(log_probs, params))

    return accuracies_at(task, model_at, temperatures)


def accuracies_at(task: Any, model_at: Callable[[float], ModelFns], temperatures: Sequence[float]) -> dict[str, Any]:
    """The accuracies of CFGTask.completion_metrics (the corrupted one when task.corrupt_rate > 0) of
    model_at(t) for each temperature t, every t with the same sampling keys; the counts and
    distances beside them are those of the run's own evaluation."""
    bad = [t for t in temperatures if not t > 0]
    if bad:
        raise ConfigError(f"low_temperature: temperatures {bad!r} must be > 0 (0 is greedy decoding)")
    cut_key, corrupted_key = jax.random.split(jax.random.key(_KEY_SEED))
    results = {}
    for temperature in temperatures:
        metrics = task.completion_metrics(model_at(temperature), cut_key, corrupted_key)
        results[f"T={temperature:g}"] = {name: value for name, value in metrics.items() if name.endswith("_accuracy")}
    return results
