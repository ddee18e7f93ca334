"""Config files and up-front validation.

Configs are Python files whose `get_config()` returns an `ml_collections.ConfigDict` (see
configs/default.py for every field); absl flags override any field (`--config.model.num_layers=8`).
`validate` checks every value before anything is compiled and raises `ConfigError` with one sentence
naming the dotted field and what it may be.
"""
from __future__ import annotations

import importlib.util
import json
import os
from typing import Any, Callable, Iterable

import ml_collections

from lmphys.errors import ConfigError, DataError

OBJECTIVES = {"gpt": "lm", "bert": "mlm"}


def load_config_file(path: str, *args: str) -> ml_collections.ConfigDict:
    """Run a config file's `get_config(*args)` (as `--config=file.py:arg` passes one argument)."""
    if not os.path.isfile(path):
        raise ConfigError(f"config file {path!r} does not exist")
    spec = importlib.util.spec_from_file_location("lmphys_user_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(*args)


ENCODER_VARIANT = "bert"


def apply_variant(config: ml_collections.ConfigDict, variant: str) -> ml_collections.ConfigDict:
    """Part 1's model variants by name: a decoder position scheme (rope, absolute, relative, pos,
    uniform, none) or "bert", the bidirectional encoder trained with masked LM (rotary positions)."""
    from lmphys.models import transformer

    if variant == ENCODER_VARIANT:
        config.model.kind = "bert"
        config.task.objective = "mlm"
    elif variant in transformer.POSITION_SCHEMES:
        config.model.position = variant
    else:
        allowed = ", ".join(transformer.POSITION_SCHEMES + (ENCODER_VARIANT,))
        raise ConfigError(f"config variant {variant!r} is unknown: it must be one of {allowed}")
    return config


def _require(ok: bool, field: str, message: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"{field} = {value!r} is invalid: {message}")


def _one_of(config: ml_collections.ConfigDict, field: str, allowed: Iterable[str]) -> None:
    allowed = tuple(allowed)
    value = _get(config, field)
    _require(value in allowed, field, f"it must be one of {', '.join(allowed)}", value)


def _positive(config: ml_collections.ConfigDict, field: str, *, allow_zero: bool = False) -> None:
    value = _get(config, field)
    ok = isinstance(value, (int, float)) and (value >= 0 if allow_zero else value > 0)
    _require(ok, field, "it must be " + ("zero or more" if allow_zero else "positive"), value)


def _fraction(config: ml_collections.ConfigDict, field: str, low_open: bool, high_open: bool) -> None:
    value = _get(config, field)
    above = value > 0 if low_open else value >= 0
    below = value < 1 if high_open else value <= 1
    interval = ("(" if low_open else "[") + "0, 1" + (")" if high_open else "]")
    _require(above and below, field, f"it must lie in {interval}", value)


def _get(config: ml_collections.ConfigDict, field: str) -> Any:
    node = config
    for part in field.split("."):
        if part not in node:
            raise ConfigError(f"{field} is missing from the config (see configs/default.py for every field)")
        node = node[part]
    return node


def validate(config: ml_collections.ConfigDict) -> None:
    """Raise ConfigError for the first invalid value; return None if the config can run."""
    from lmphys.models import transformer  # here, so that loading a config stays cheap

    _require(isinstance(_get(config, "seed"), int), "seed", "it must be an integer", config.seed)
    data_seed = _get(config, "data_seed")
    _require(isinstance(data_seed, int) and data_seed >= -1, "data_seed", "it must be an integer, -1 for seed's", data_seed)
    _require(bool(_get(config, "workdir")), "workdir", "it must name a directory", config.workdir)

    _one_of(config, "task.name", TASK_VALIDATORS)
    _one_of(config, "task.objective", OBJECTIVES.values())
    TASK_VALIDATORS[config.task.name](config)

    _one_of(config, "model.kind", transformer.MODEL_KINDS)
    expected = OBJECTIVES[config.model.kind]
    _require(
        config.task.objective == expected,
        "task.objective",
        f"model.kind = {config.model.kind!r} trains with objective {expected!r}",
        config.task.objective,
    )
    for field in ("model.num_layers", "model.num_heads", "model.width", "model.mlp_ratio", "model.max_len"):
        _positive(config, field)
    _require(
        config.model.width % config.model.num_heads == 0,
        "model.num_heads",
        f"it must divide model.width = {config.model.width}",
        config.model.num_heads,
    )
    _require(
        config.task.seq_len <= config.model.max_len,
        "task.seq_len",
        f"it must be at most model.max_len = {config.model.max_len}",
        config.task.seq_len,
    )
    _fraction(config, "model.dropout", low_open=False, high_open=True)
    _one_of(config, "model.dtype", transformer.DTYPES)
    _one_of(config, "model.attention_impl", transformer.ATTENTION_IMPLS)
    _one_of(config, "model.position", transformer.POSITION_SCHEMES)
    _fraction(config, "model.rope_fraction", low_open=True, high_open=False)
    head_dim = config.model.width // config.model.num_heads
    rotated = int(head_dim * config.model.rope_fraction)
    if config.model.position == "rope":
        _require(
            rotated >= 2 and rotated % 2 == 0,
            "model.rope_fraction",
            f"it must rotate an even number (>= 2) of the {head_dim} head dims",
            config.model.rope_fraction,
        )
    _positive(config, "model.rope_base")
    _positive(config, "model.relative_max_distance")

    from lmphys.train.optim import SCHEDULES

    _positive(config, "optim.learning_rate")
    _fraction(config, "optim.b1", low_open=False, high_open=True)
    _fraction(config, "optim.b2", low_open=False, high_open=True)
    _positive(config, "optim.eps")
    _positive(config, "optim.weight_decay", allow_zero=True)
    _positive(config, "optim.warmup_steps", allow_zero=True)
    _one_of(config, "optim.schedule", SCHEDULES)
    _fraction(config, "optim.final_lr_fraction", low_open=False, high_open=False)
    _positive(config, "optim.grad_clip", allow_zero=True)

    _positive(config, "train.steps", allow_zero=True)
    for field in ("train.log_every_seconds", "train.eval_every", "train.checkpoint_every", "train.keep_checkpoints"):
        _positive(config, field)

    _validate_parallel(config)
    _validate_fine_tuning(config)


def _validate_cfg_task(config: ml_collections.ConfigDict) -> None:
    for field in ("task.batch_size", "task.seq_len", "task.eval_samples"):
        _positive(config, field)
    _positive(config, "task.eval_prefix_len", allow_zero=True)
    _positive(config, "task.temperature", allow_zero=True)
    _positive(config, "task.eval_kl_strings")
    _fraction(config, "task.corrupt_fraction", low_open=False, high_open=False)
    _fraction(config, "task.corrupt_rate", low_open=False, high_open=False)
    _validate_task_data(config)


def _validate_bio_task(config: ml_collections.ConfigDict) -> None:
    from lmphys.tasks import bio

    bio.validate(config.task)


def _validate_igsm_task(config: ml_collections.ConfigDict) -> None:
    from lmphys.tasks import igsm

    igsm.validate(config.task)
    _require(config.task.eval_len <= config.model.max_len, "task.eval_len",
             f"it must be at most model.max_len = {config.model.max_len} (evaluation writes solutions up to it)",
             config.task.eval_len)


# task.name -> the check of its task.* fields; a new world adds its entry here (and its builder to
# train/loop.py's TASK_BUILDERS).
TASK_VALIDATORS: dict[str, Callable[[ml_collections.ConfigDict], None]] = {
    "cfg": _validate_cfg_task,
    "bio": _validate_bio_task,
    "igsm": _validate_igsm_task,
}


def init_from(config: ml_collections.ConfigDict) -> str:
    """The workdir whose trained parameters start this run ("" for a fresh init); configs from
    before fine-tuning existed have no such field."""
    return config.get("init_from", "") or ""


def lora_ranks(config: ml_collections.ConfigDict) -> tuple[int, int]:
    """(embedding rank, attention rank) of a LoRA fine-tune; (0, 0) trains every parameter."""
    lora = config.get("lora", None)
    return (0, 0) if lora is None else (lora.embedding_rank, lora.attention_rank)


def _validate_fine_tuning(config: ml_collections.ConfigDict) -> None:
    ranks = lora_ranks(config)
    for field, rank in zip(("lora.embedding_rank", "lora.attention_rank"), ranks):
        _require(isinstance(rank, int) and rank >= 0, field, "it must be zero or a positive integer", rank)
    if any(ranks):
        _require(bool(init_from(config)), "lora.embedding_rank", "LoRA adapts a pretrained model: set init_from too", ranks[0])
        from lmphys.models.attention import QUERY_KEY_SCHEMES

        _require(config.model.position in QUERY_KEY_SCHEMES or not ranks[1], "lora.attention_rank",
                 f"model.position = {config.model.position!r} has no query projection to adapt", ranks[1])
    source = init_from(config)
    if source:
        _require(os.path.isfile(os.path.join(source, "config.json")), "init_from",
                 "it must be the workdir of a trained run (with config.json and checkpoints)", source)


def _validate_parallel(config: ml_collections.ConfigDict) -> None:
    """The mesh fields; whether they fit the devices is checked when the mesh is made."""
    from lmphys.parallel import DISTRIBUTED_MODES

    for field in ("parallel.models", "parallel.fsdp"):
        value = _get(config, field)
        _require(isinstance(value, int) and value >= 1, field, "it must be a positive integer", value)
    data = _get(config, "parallel.data")
    _require(isinstance(data, int) and (data >= 1 or data == -1), "parallel.data", "it must be positive, or -1 for the devices left", data)
    _one_of(config, "parallel.distributed", DISTRIBUTED_MODES)
    if _get(config, "parallel.coordinator_address"):
        processes = _get(config, "parallel.num_processes")
        _require(isinstance(processes, int) and processes >= 1, "parallel.num_processes", "it must be positive", processes)
        index = _get(config, "parallel.process_id")
        _require(isinstance(index, int) and 0 <= index < processes, "parallel.process_id",
                 f"it must lie in [0, {processes})", index)


def _validate_task_data(config: ml_collections.ConfigDict) -> None:
    """The task's own files exist: the grammar name or path resolves to a readable table."""
    from lmphys.tasks import cfg

    try:
        cfg.load_grammar(config.task.grammar)
    except DataError as error:
        raise ConfigError(f"task.grammar = {config.task.grammar!r} is invalid: {error}") from None


def flat_fields(config: ml_collections.ConfigDict | dict) -> dict[str, str]:
    """{dotted field: JSON of its value} for every leaf of a config (or of its JSON dict)."""
    tree = json.loads(config.to_json_best_effort()) if isinstance(config, ml_collections.ConfigDict) else config
    out = {}
    for name, value in tree.items():
        if isinstance(value, dict):
            out.update({f"{name}.{inner}": text for inner, text in flat_fields(value).items()})
        else:
            out[name] = json.dumps(value, sort_keys=True)
    return out
