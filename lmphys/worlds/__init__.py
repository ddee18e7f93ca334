"""The synthetic worlds, one package each; the package's folder name is its `task.name`.

A world package's `__init__` is its public API, and offers the training loop three names (the
contract is spelled out in base.py): `validate_config(config)`, `task_from_config(task_config)`
and `ANALYSES`. A new world is a new folder here plus its configs: the loop, sweeps and scripts
find it by name.
"""
from __future__ import annotations

import importlib
import os
import pkgutil
from types import ModuleType

from lmphys.errors import ConfigError

# task.name -> the module that implements it: every package in this folder. Tests may register a
# stand-in world by adding an entry (a module path).
WORLDS: dict[str, str] = {info.name: f"{__name__}.{info.name}"
                          for info in pkgutil.iter_modules([os.path.dirname(__file__)]) if info.ispkg}


def names() -> tuple[str, ...]:
    """The task names a config may use."""
    return tuple(sorted(WORLDS))


def world(name: str) -> ModuleType:
    """The world package (or registered module) of `task.name` = `name`."""
    if name not in WORLDS:
        raise ConfigError(f"task.name = {name!r} is invalid: it must be one of {', '.join(names())}")
    return importlib.import_module(WORLDS[name])
