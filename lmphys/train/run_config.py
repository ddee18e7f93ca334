"""Up-front validation of a whole run config (DESIGN.md, principle 6).

`validate` checks every field before anything is compiled: the run's seeds and workdir, the task
(through its world's `validate_config`), the model, optimizer, schedule, mesh and fine-tuning
fields. The first invalid value raises `ConfigError` with one sentence naming the dotted field and
what it may be.
"""
from __future__ import annotations

import os

import ml_collections

from lmphys import config as config_lib, parallel, worlds
from lmphys.config import fraction, one_of, positive, require, value_at
from lmphys.models import transformer
from lmphys.models.attention import QUERY_KEY_SCHEMES
from lmphys.models.canon import valid_canon
from lmphys.train.optim import SCHEDULES

OBJECTIVES = {"gpt": "lm", "bert": "mlm"}  # model.kind -> the task.objective it trains with


def validate(config: ml_collections.ConfigDict) -> None:
    """Raise ConfigError for the first invalid value; return None if the config can run."""
    require(isinstance(value_at(config, "seed"), int), "seed", "it must be an integer", config.seed)
    data_seed = value_at(config, "data_seed")
    require(isinstance(data_seed, int) and data_seed >= -1, "data_seed", "it must be an integer, -1 for seed's", data_seed)
    require(bool(value_at(config, "workdir")), "workdir", "it must name a directory", config.workdir)

    one_of(config, "task.name", worlds.names())
    one_of(config, "task.objective", OBJECTIVES.values())
    worlds.world(config.task.name).validate_config(config)

    _validate_model(config)
    _validate_optimizer(config)
    positive(config, "train.steps", allow_zero=True)
    for field in ("train.log_every_seconds", "train.eval_every", "train.checkpoint_every", "train.keep_checkpoints"):
        positive(config, field)
    if "save_timeout_seconds" in config.train:  # runs saved before the field existed lack it
        positive(config, "train.save_timeout_seconds")
    _validate_parallel(config)
    _validate_fine_tuning(config)


def _validate_model(config: ml_collections.ConfigDict) -> None:
    one_of(config, "model.kind", transformer.MODEL_KINDS)
    expected = OBJECTIVES[config.model.kind]
    require(config.task.objective == expected, "task.objective",
            f"model.kind = {config.model.kind!r} trains with objective {expected!r}", config.task.objective)
    for field in ("model.num_layers", "model.num_heads", "model.width", "model.mlp_ratio", "model.max_len"):
        positive(config, field)
    require(config.model.width % config.model.num_heads == 0, "model.num_heads",
            f"it must divide model.width = {config.model.width}", config.model.num_heads)
    require(config.task.seq_len <= config.model.max_len, "task.seq_len",
            f"it must be at most model.max_len = {config.model.max_len}", config.task.seq_len)
    fraction(config, "model.dropout", low_open=False, high_open=True)
    one_of(config, "model.dtype", transformer.DTYPES)
    one_of(config, "model.attention_impl", transformer.ATTENTION_IMPLS)
    one_of(config, "model.position", transformer.POSITION_SCHEMES)
    fraction(config, "model.rope_fraction", low_open=True, high_open=False)
    head_dim = config.model.width // config.model.num_heads
    rotated = int(head_dim * config.model.rope_fraction)
    if config.model.position == "rope":
        require(rotated >= 2 and rotated % 2 == 0, "model.rope_fraction",
                f"it must rotate an even number (>= 2) of the {head_dim} head dims", config.model.rope_fraction)
    positive(config, "model.rope_base")
    positive(config, "model.relative_max_distance")
    _validate_block_options(config)


def _validate_block_options(config: ml_collections.ConfigDict) -> None:
    """Part 4.1's block options; configs saved before they existed lack them (today's block)."""
    model = config.model
    if "canon" in model:
        require(valid_canon(model.canon), "model.canon",
                "it must be letters from A, B, C, D, each at most once (\"\" for none)", model.canon)
        require(not model.canon or model.kind == "gpt", "model.canon",
                "Canon layers are causal convolutions, for model.kind = 'gpt' only", model.canon)
    if "norm" in model:
        one_of(config, "model.norm", transformer.NORMS)
    if "mlp" in model:
        one_of(config, "model.mlp", transformer.MLPS)
    for field in ("qk_norm", "bias"):
        if field in model:
            require(isinstance(model[field], bool), f"model.{field}", "it must be True or False", model[field])
    if model.get("qk_norm", False):
        require(model.position in QUERY_KEY_SCHEMES, "model.qk_norm",
                f"model.position = {model.position!r} has no queries or keys to normalise", model.qk_norm)


def _validate_optimizer(config: ml_collections.ConfigDict) -> None:
    positive(config, "optim.learning_rate")
    fraction(config, "optim.b1", low_open=False, high_open=True)
    fraction(config, "optim.b2", low_open=False, high_open=True)
    positive(config, "optim.eps")
    positive(config, "optim.weight_decay", allow_zero=True)
    positive(config, "optim.warmup_steps", allow_zero=True)
    one_of(config, "optim.schedule", SCHEDULES)
    fraction(config, "optim.final_lr_fraction", low_open=False, high_open=False)
    positive(config, "optim.grad_clip", allow_zero=True)


def _validate_fine_tuning(config: ml_collections.ConfigDict) -> None:
    ranks = config_lib.lora_ranks(config)
    for field, rank in zip(("lora.embedding_rank", "lora.attention_rank"), ranks):
        require(isinstance(rank, int) and rank >= 0, field, "it must be zero or a positive integer", rank)
    source = config_lib.init_from(config)
    if any(ranks):
        require(bool(source), "lora.embedding_rank", "LoRA adapts a pretrained model: set init_from too", ranks[0])
        require(config.model.position in QUERY_KEY_SCHEMES or not ranks[1], "lora.attention_rank",
                f"model.position = {config.model.position!r} has no query projection to adapt", ranks[1])
    if source:
        require(os.path.isfile(os.path.join(source, "config.json")), "init_from",
                "it must be the workdir of a trained run (with config.json and checkpoints)", source)


def _validate_parallel(config: ml_collections.ConfigDict) -> None:
    """The mesh fields; whether they fit the devices is checked when the mesh is made."""
    for field in ("parallel.models", "parallel.fsdp"):
        value = value_at(config, field)
        require(isinstance(value, int) and value >= 1, field, "it must be a positive integer", value)
    data = value_at(config, "parallel.data")
    require(isinstance(data, int) and (data >= 1 or data == -1), "parallel.data",
            "it must be positive, or -1 for the devices left", data)
    one_of(config, "parallel.distributed", parallel.DISTRIBUTED_MODES)
    if value_at(config, "parallel.coordinator_address"):
        processes = value_at(config, "parallel.num_processes")
        require(isinstance(processes, int) and processes >= 1, "parallel.num_processes", "it must be positive", processes)
        index = value_at(config, "parallel.process_id")
        require(isinstance(index, int) and 0 <= index < processes, "parallel.process_id",
                f"it must lie in [0, {processes})", index)
