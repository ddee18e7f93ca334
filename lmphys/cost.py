"""What a sweep would cost on a GPU, estimated before it runs (`scripts/sweep.py --estimate`).

A trial's training FLOPs are its steps x tokens per step x analytic FLOPs per token
(sizes.flops_per_token). They become hours at the FLOP rate the PyTorch peer (nanoGPT's
bench.py) reached on one H100 on the perf reference shapes (perf.REFERENCE_SHAPES: its tokens/s
times the shape's FLOPs per token), interpolated by model width on a log scale: from 138 TFLOP/s at
width 256 to 504 TFLOP/s at width 1920. That is what a hand-tuned step achieves, not the card's
peak; lmphys's own H100 rows replace it once measured (docs/benchmarks.md).

What the estimate leaves out, so it is a lower bound: evaluation, analyses and checkpoints; host
data generation (it overlaps the step, docs/benchmarks.md); models narrower than 256, which reach
less than the 256-wide rate used for them; and gains from stacking several small models in one
step (up to 3x at 4/256), which go the other way. Every trial's config is validated first: a
trial that would fail at its start is reported with its reason instead of a cost. A fine-tune
whose pretraining run does not exist yet is costed and flagged: that its start exists can only be
checked once the pretraining has run.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import math
import os

import jax
import ml_collections

from lmphys import config as config_lib
from lmphys import perf
from lmphys.errors import LmphysError
from lmphys.models import sizes, transformer
from lmphys.train import run_config, runs


@dataclasses.dataclass(frozen=True)
class TrialCost:
    """One trial's size and estimated H100 time (`error` set instead when its config is invalid)."""

    trial_id: str
    params: int = 0
    steps: int = 0
    tokens: int = 0
    flops: float = 0.0
    hours: float = 0.0
    error: str | None = None
    waits_on: str | None = None  # the pretraining run a fine-tune starts from, not trained yet


@functools.lru_cache(maxsize=1)
def reference_rates() -> tuple[tuple[int, float], ...]:
    """(width, FLOP/s) of the peer on one H100, per reference shape with a measured rate, by width
    (the widest shape of each width). Computed once: every trial's estimate reads it."""
    rates: dict[int, float] = {}
    for shape in perf.REFERENCE_SHAPES:
        if shape.baseline_tokens_per_s is None:
            continue
        model = perf.model_config(shape, perf.Levers())
        rates[shape.width] = shape.baseline_tokens_per_s * sizes.flops_per_token(model, shape.seq_len)
    return tuple(sorted(rates.items()))


def flop_rate(width: int) -> float:
    """FLOP/s on one H100 for a model of this width: the reference rates interpolated linearly in
    log(width), held at the ends."""
    rates = reference_rates()
    if width <= rates[0][0]:
        return rates[0][1]
    for (low, low_rate), (high, high_rate) in zip(rates, rates[1:]):
        if width <= high:
            share = (math.log(width) - math.log(low)) / (math.log(high) - math.log(low))
            return low_rate + share * (high_rate - low_rate)
    return rates[-1][1]


def trial_cost(trial_id: str, config: ml_collections.ConfigDict) -> TrialCost:
    """The cost of one trial's run config; an invalid config gives its error sentence instead."""
    source = config_lib.init_from(config)
    waits_on = source if source and not os.path.isfile(os.path.join(source, "config.json")) else None
    if waits_on:
        # A fine-tune whose pretraining has not run yet: its cost is known, the check that its
        # start exists has to wait; everything else is validated.
        config = copy.deepcopy(config)
        with config.unlocked():
            config.init_from = ""
            if config.get("lora", None) is not None:
                config.lora.embedding_rank = config.lora.attention_rank = 0
    try:
        run_config.validate(config)
        task = runs.build_task(config)
        model = transformer.ModelConfig.from_config(config.model, vocab_size=task.vocab_size)
    except LmphysError as error:
        return TrialCost(trial_id, error=str(error))
    params = _params(model)
    steps = runs.steps_to_train(task, config)  # what training will run, not always train.steps
    tokens = steps * config.task.batch_size * config.task.seq_len
    flops = tokens * sizes.flops_per_token(model, config.task.seq_len)
    return TrialCost(trial_id, params, steps, tokens, flops, flops / flop_rate(model.width) / 3600.0, waits_on=waits_on)


def _params(model: transformer.ModelConfig) -> int:
    """Parameters of a model of this config, counted from its abstract shapes (nothing allocated)."""
    shapes = jax.eval_shape(lambda: transformer.init_model(model, jax.random.key(0))[1])
    return sizes.num_params(shapes)


def lines(costs: list[TrialCost]) -> list[str]:
    """A table of the trials' costs and their total, for the terminal."""
    out = [f"{'trial':<48} {'params':>8} {'steps':>8} {'tokens':>9} {'PFLOP':>9} {'H100 h':>8}"]
    for cost in costs:
        if cost.error:
            out.append(f"{cost.trial_id:<48} invalid: {cost.error}")
            continue
        out.append(f"{cost.trial_id:<48} {cost.params / 1e6:>7.2f}M {cost.steps:>8,} {cost.tokens / 1e9:>8.3f}B "
                   f"{cost.flops / 1e15:>9.1f} {cost.hours:>8.2f}")
    valid = [cost for cost in costs if not cost.error]
    waiting = [cost for cost in valid if cost.waits_on]
    total = sum(cost.hours for cost in valid)
    out.append(f"{len(valid)} trials, {sum(c.tokens for c in valid) / 1e9:.2f}B tokens, about {total:.1f} H100 hours "
               f"(training steps alone, at the PyTorch peer's H100 FLOP rate for each width; lmphys/cost.py)"
               + (f"; {len(waiting)} start from runs not trained yet (their start is checked when they run)"
                  if waiting else "")
               + (f"; {len(costs) - len(valid)} invalid" if len(valid) < len(costs) else ""))
    return out
