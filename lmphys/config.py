"""Config files, and the checks every config field goes through.

Configs are Python files whose `get_config()` returns an `ml_collections.ConfigDict` (see
configs/default.py for every field); absl flags override any field (`--config.model.num_layers=8`).
The checkers here (`require`, `one_of`, `positive`, `fraction`) raise `ConfigError` with one
sentence naming the dotted field and what it may be; each world checks its own task fields with
them, and `lmphys.train.run_config.validate` checks a whole run config before anything compiles.
"""
from __future__ import annotations

import importlib.util
import inspect
import json
import os
from typing import Any, Iterable

import ml_collections

from lmphys.errors import ConfigError, LmphysError


def load_config_file(path: str, *args: str) -> ml_collections.ConfigDict:
    """Run a config file's `get_config(*args)` (as `--config=file.py:arg` passes one argument).
    Every way a config file can fail (missing, broken, no get_config, a wrong argument, an error
    inside it, something else than a ConfigDict) is a ConfigError in one sentence."""
    if not os.path.isfile(path):
        raise ConfigError(f"config file {path!r} does not exist")
    spec = importlib.util.spec_from_file_location("lmphys_user_config", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except LmphysError:
        raise
    except Exception as error:  # noqa: BLE001 (a user's file can raise anything)
        raise ConfigError(f"config file {path!r} could not be loaded: {_one_line(error)}") from None
    get_config = getattr(module, "get_config", None)
    if not callable(get_config):
        raise ConfigError(f"config file {path!r} has no get_config() function")
    given = f"--config={path}:{args[0]}" if args else f"--config={path}"
    try:
        inspect.signature(get_config).bind(*args)
    except TypeError:
        takes = [name for name in inspect.signature(get_config).parameters]
        wanted = f"an argument ({', '.join(takes)}), e.g. {path}:<{takes[0]}>" if takes else "no argument"
        raise ConfigError(f"{given} is invalid: its get_config() takes {wanted}") from None
    try:
        config = get_config(*args)
    except LmphysError:
        raise
    except Exception as error:  # noqa: BLE001 (as above)
        raise ConfigError(f"{given} is invalid: its get_config() failed with {_one_line(error)}") from None
    if not isinstance(config, ml_collections.ConfigDict):
        raise ConfigError(f"{given} is invalid: its get_config() returned a {type(config).__name__}, "
                          "not an ml_collections.ConfigDict")
    return config


def _one_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0][:200]}"


def check_field(config: ml_collections.ConfigDict, field: str, where: str) -> None:
    """ConfigError unless `field` (dotted) is a field of `config`; `where` names the config."""
    node: Any = config
    for part in field.split("."):
        if not isinstance(node, (ml_collections.ConfigDict, dict)) or part not in node:
            raise ConfigError(f"{field} is not a field of {where}: check its spelling against that file "
                              "(configs/default.py lists every field of a run)")
        node = node[part]


def require(ok: bool, field: str, message: str, value: Any) -> None:
    """ConfigError "<field> = <value> is invalid: <message>" unless `ok`."""
    if not ok:
        raise ConfigError(f"{field} = {value!r} is invalid: {message}")


def one_of(config: ml_collections.ConfigDict, field: str, allowed: Iterable[str]) -> None:
    allowed = tuple(allowed)
    value = value_at(config, field)
    require(value in allowed, field, f"it must be one of {', '.join(allowed)}", value)


def positive(config: ml_collections.ConfigDict, field: str, *, allow_zero: bool = False) -> None:
    value = value_at(config, field)
    ok = isinstance(value, (int, float)) and (value >= 0 if allow_zero else value > 0)
    require(ok, field, "it must be " + ("zero or more" if allow_zero else "positive"), value)


def fraction(config: ml_collections.ConfigDict, field: str, low_open: bool, high_open: bool) -> None:
    value = value_at(config, field)
    above = value > 0 if low_open else value >= 0
    below = value < 1 if high_open else value <= 1
    interval = ("(" if low_open else "[") + "0, 1" + (")" if high_open else "]")
    require(above and below, field, f"it must lie in {interval}", value)


def value_at(config: ml_collections.ConfigDict, field: str) -> Any:
    """The value of a dotted field ("model.num_layers"); ConfigError if the config lacks it."""
    node = config
    for part in field.split("."):
        if part not in node:
            raise ConfigError(f"{field} is missing from the config (see configs/default.py for every field)")
        node = node[part]
    return node


def require_fields(section: ml_collections.ConfigDict, fields: Iterable[str], prefix: str, where: str) -> None:
    """ConfigError naming the first of `fields` that `section` (the config's `prefix` part) lacks;
    `where` says where every field is listed."""
    for name in fields:
        if name not in section:
            raise ConfigError(f"{prefix}.{name} is missing from the config (see {where})")


def init_from(config: ml_collections.ConfigDict) -> str:
    """The workdir whose trained parameters start this run ("" for a fresh init); configs from
    before fine-tuning existed have no such field."""
    return config.get("init_from", "") or ""


def lora_ranks(config: ml_collections.ConfigDict) -> tuple[int, int]:
    """(embedding rank, attention rank) of a LoRA fine-tune; (0, 0) trains every parameter."""
    lora = config.get("lora", None)
    return (0, 0) if lora is None else (lora.embedding_rank, lora.attention_rank)


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
