"""A run's parts, made from its config, and a finished run loaded back for analysis.

`build(config)` gives what the stacked models of a job share: the world's task (found by
`task.name`, lmphys.worlds), the model's graph, the optimizer and the schedule. `run_keys` and
`initial_state` are each model's own. `load_config(workdir)` reads a run's config.json back;
`load_trained(workdir)` is the one way scripts (probe.py, generate.py) and analyses get a finished
run: its config, task, model graph and latest parameters, as a `TrainedRun`; `trained_from_state` makes the same from a state still in memory
(a sweep analysing the run it just trained). `make_model_fns` is the task's view of a model.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
from typing import Any, Callable

import jax
import ml_collections

from lmphys import config as config_lib, worlds
from lmphys.errors import ConfigError, DataError
from lmphys.models import decode, transformer
from lmphys.train import checkpoint, lora, optim, run_config, step as step_lib
from lmphys.worlds.base import ModelFns


@dataclasses.dataclass
class RunParts:
    """What the stacked models of a job share: the task, the model code and the optimizer."""

    task: Any
    model_cfg: transformer.ModelConfig
    graphdef: Any
    optimizer: Any
    schedule: optim.Schedule


def build_task(config: ml_collections.ConfigDict) -> Any:
    """The task of `config.task.name`'s world, built from `config.task`."""
    return worlds.world(config.task.name).task_from_config(config.task)


def steps_to_train(task: Any, config: ml_collections.ConfigDict) -> int:
    """The steps a run trains: a task that counts exposures (Part 3) or real tokens (Part 2.2) sets
    them from the config's train.steps (`task.train_steps`); any other task trains train.steps."""
    return task.train_steps(config.train.steps) if hasattr(task, "train_steps") else config.train.steps


def build(config: ml_collections.ConfigDict) -> RunParts:
    """The parts of a run that its stacked models share (see RunParts)."""
    task = build_task(config)
    model_cfg = transformer.ModelConfig.from_config(config.model, vocab_size=task.vocab_size)
    graphdef = transformer.model_graph(model_cfg)
    optimizer = optim.make_optimizer(config.optim)
    return RunParts(task, model_cfg, graphdef, optimizer, optim.Schedule.from_config(config.optim, config.train.steps))


def run_keys(config: ml_collections.ConfigDict) -> dict[str, jax.Array]:
    """The run's PRNG keys: model init, data, dropout, eval batch and eval sampling from `seed`;
    `data_seed` (when >= 0) replaces the data stream alone, to vary data order at a fixed init."""
    names = ("model", "data", "dropout", "eval_batch", "eval")
    keys = dict(zip(names, jax.random.split(jax.random.key(config.seed), len(names))))
    if config.data_seed >= 0:
        keys["data"] = jax.random.split(jax.random.key(config.data_seed), len(names))[1]
    return keys


def initial_state(parts: RunParts, config: ml_collections.ConfigDict) -> step_lib.TrainState:
    """A fresh model, or (init_from) a trained one, maybe with LoRA factors to train on top."""
    params = transformer.init_model(parts.model_cfg, run_keys(config)["model"])[1]
    frozen = None
    source = config_lib.init_from(config)
    if source:
        params = _pretrained_params(source, params)
        ranks = config_lib.lora_ranks(config)
        if any(ranks):
            frozen = params
            params = lora.init(frozen, run_keys(config)["model"], embedding_rank=ranks[0], attention_rank=ranks[1])
    # The model's own optimizer, not the shared one: its injected state holds this model's weight
    # decay, which the shared update then reads.
    return step_lib.init_state(params, optim.make_optimizer(config.optim), config.optim, frozen)


def _pretrained_params(workdir: str, like: dict) -> dict:
    """The latest parameters of the run in `workdir`, checked to fit this run's model."""
    trained = load_trained(workdir).params
    expected = jax.tree.map(lambda leaf: leaf.shape, like)
    found = jax.tree.map(lambda leaf: leaf.shape, trained)
    if expected != found:
        raise DataError(f"init_from = {workdir!r}: its model's parameter shapes differ from this config's model "
                        "(model.* and the task's vocabulary must match the pretrained run)")
    return trained


@dataclasses.dataclass
class TrainedRun:
    """A run's parameters, ready for analysis: its config, task, model graph and parameters."""

    config: ml_collections.ConfigDict
    task: Any
    graphdef: Any
    params: Any
    step: int


def load_config(workdir: str) -> ml_collections.ConfigDict:
    """The validated config the run in `workdir` trained with (its config.json); DataError in one
    sentence when there is none or it is damaged."""
    if not os.path.isdir(workdir):
        raise DataError(f"{workdir} is not a directory: give the workdir of a trained run")
    path = os.path.join(workdir, "config.json")
    if not os.path.isfile(path):
        raise DataError(f"{workdir} holds no config.json: is it a run's workdir?")
    try:
        with open(path) as handle:
            raw = json.load(handle)
    except ValueError as error:
        raise DataError(f"{path} is not valid JSON ({error}): restore it, or rerun the training command "
                        "on this workdir to write it again") from None
    if not isinstance(raw, dict):
        raise DataError(f"{path} holds a JSON {type(raw).__name__}, not a run config")
    config = ml_collections.ConfigDict(raw)
    try:
        run_config.validate(config)
    except ConfigError as error:
        raise DataError(f"{path} is not a valid run config: {error}") from None
    return config


def load_trained(workdir: str, log: Callable[[str], None] = functools.partial(print, flush=True)) -> TrainedRun:
    """The config and latest parameters of the run in `workdir` (for probes, generation, analyses).
    It only reads: a corrupt checkpoint is skipped for an older one with a line to `log`, and a
    save in flight (the run may still be training) is left alone."""
    config = load_config(workdir)
    parts = build(config)
    checkpoints = checkpoint.Checkpointer(workdir, config.train.keep_checkpoints, read_only=True)
    try:
        if not checkpoints.all_steps():
            raise DataError(f"{workdir} holds no finished checkpoint yet")
        step, state = checkpoints.restore_newest(initial_state(parts, config), log)
    finally:
        checkpoints.close()
    return TrainedRun(config, parts.task, parts.graphdef, step_lib.model_params(state), step)


def trained_from_state(config: ml_collections.ConfigDict, state: step_lib.TrainState) -> TrainedRun:
    """A TrainedRun of a run whose final state is still in memory (what `loop` returns)."""
    parts = build(config)
    return TrainedRun(config, parts.task, parts.graphdef, step_lib.model_params(state), int(state["step"]))


def make_model_fns(graphdef, config: ml_collections.ConfigDict, task) -> Callable[[Any], ModelFns]:
    """params -> the task's view of the model: jitted sampling (decoders only) and log-probs."""
    log_probs = jax.jit(lambda params, tokens: jax.nn.log_softmax(transformer.apply(graphdef, params, tokens)))
    generate = None
    if config.model.kind == "gpt":
        generate = jax.jit(
            functools.partial(
                decode.generate,
                graphdef,
                temperature=config.task.temperature,
                greedy=config.task.temperature == 0,
                eos_id=task.eos_id,
            )
        )

    def bind(params) -> ModelFns:
        sample = None if generate is None else functools.partial(generate, params)
        return ModelFns(sample=sample, log_probs=functools.partial(log_probs, params))

    return bind
