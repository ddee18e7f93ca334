"""Sweeps: a grid of config overrides -> trials with stable ids -> runs, each in its own workdir.

A sweep config (configs/sweeps/*.py) holds a complete run config as `base`, a `grid` that mirrors
the config's layout with a list of values per swept field, and the post-training `analyses` to run
on each trial. Restarting a sweep skips finished trials (those with a result.json) and resumes an
interrupted one from its checkpoint; a trial that raises is recorded in its error.txt and the
others go on. Trials run one after another here; batching trials that share shapes into one
vmapped job and spreading jobs over devices and hosts come with the scale-out work.
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import os
import time
import traceback
from typing import Any, Callable, Iterable

import ml_collections

from lmphys.errors import ConfigError
from lmphys.train import loop

RESULT_FILE = "result.json"
ERROR_FILE = "error.txt"


@dataclasses.dataclass(frozen=True)
class Trial:
    """One point of the grid: the dotted fields it overrides, in grid order."""

    overrides: tuple[tuple[str, Any], ...]

    @property
    def trial_id(self) -> str:
        """Stable, readable and filesystem-safe: 'num_layers=4,position=rope'."""
        parts = [f"{field.split('.')[-1]}={value}" for field, value in self.overrides]
        return ",".join(parts).replace("/", "_") or "base"

    def config(self, base: ml_collections.ConfigDict, sweep_workdir: str) -> ml_collections.ConfigDict:
        config = base.copy_and_resolve_references()
        for field, value in self.overrides:
            _set_field(config, field, value)
        config.workdir = os.path.join(sweep_workdir, "trials", self.trial_id)
        return config


def _set_field(config: ml_collections.ConfigDict, field: str, value: Any) -> None:
    *parents, name = field.split(".")
    node = config
    for part in parents:
        node = node[part]
    if name not in node:
        raise ConfigError(f"sweep grid field {field} is not a field of the base config")
    node[name] = value


def _flatten(grid: Any, prefix: str = "") -> list[tuple[str, list]]:
    """[('model.position', [...]), ...] from a grid that mirrors the config's nesting."""
    fields = []
    for name, value in grid.items():
        field = f"{prefix}{name}"
        if isinstance(value, (dict, ml_collections.ConfigDict)):
            fields.extend(_flatten(value, field + "."))
        elif isinstance(value, (list, tuple)) and value:
            fields.append((field, list(value)))
        else:
            raise ConfigError(f"sweep grid field {field} = {value!r} is invalid: it must be a non-empty list")
    return fields


def expand(grid: Any) -> list[Trial]:
    """Every combination of the grid's values, the first field varying slowest."""
    fields = _flatten(grid)
    names = [field for field, _ in fields]
    combos = itertools.product(*(values for _, values in fields))
    return [Trial(tuple(zip(names, combo))) for combo in combos]


def _write_json(path: str, payload: dict) -> None:
    """Write via a temporary file so a killed sweep never leaves half a result behind."""
    temporary = path + ".tmp"
    with open(temporary, "w") as handle:
        json.dump(payload, handle, indent=2, sort_keys=True)
    os.replace(temporary, path)


Analysis = Callable[[ml_collections.ConfigDict, loop.RunSummary], dict]


def _structure_analysis(config: ml_collections.ConfigDict, summary: loop.RunSummary) -> dict:
    from lmphys import cfg_structure  # imported on use: it pulls in probes and the model zoo

    return cfg_structure.analyze_run(config, summary.state["params"])


ANALYSES: dict[str, Analysis] = {"structure": _structure_analysis}


def run_sweep(sweep: ml_collections.ConfigDict, *, log: Callable[[str], None] = functools.partial(print, flush=True)) -> dict[str, str]:
    """Run every unfinished trial of `sweep`; return {trial_id: 'done' | 'failed' | 'stopped'}."""
    unknown = [name for name in sweep.analyses if name not in ANALYSES]
    if unknown:
        raise ConfigError(f"analyses = {list(sweep.analyses)!r} is invalid: each must be one of {', '.join(ANALYSES)}")
    trials = expand(sweep.grid)
    workdir = os.path.abspath(sweep.workdir)
    os.makedirs(workdir, exist_ok=True)
    status = {trial.trial_id: _status(workdir, trial) for trial in trials}
    log(f"sweep {workdir}: {len(trials)} trials, {_counts(status)}")
    durations = []
    for index, trial in enumerate(trials, 1):
        if status[trial.trial_id] == "done":
            continue
        config = trial.config(sweep.base, workdir)
        log(f"[{index}/{len(trials)}] {trial.trial_id} ({_counts(status)}{_eta(durations, status)})")
        started = time.perf_counter()
        status[trial.trial_id] = _run_trial(trial, config, sweep.analyses, log)
        durations.append(time.perf_counter() - started)
        if status[trial.trial_id] == "stopped":
            log("sweep stopped by a signal; rerun the same command to resume")
            break
    log(f"sweep {workdir}: {_counts(status)}")
    return status


def _run_trial(trial: Trial, config: ml_collections.ConfigDict, analyses: Iterable[str], log) -> str:
    os.makedirs(config.workdir, exist_ok=True)
    error_path = os.path.join(config.workdir, ERROR_FILE)
    try:
        summary = loop.run(config, log=lambda line: log("    " + line))
        if summary.stopped_early:
            return "stopped"
        result = {
            "trial_id": trial.trial_id,
            "overrides": dict(trial.overrides),
            "steps": summary.steps,
            "final_loss": summary.final_loss,
            "eval": summary.eval_metrics,
            "analyses": {name: ANALYSES[name](config, summary) for name in analyses},
        }
    except Exception:  # one failing trial is recorded and must not stop the others
        with open(error_path, "w") as handle:
            handle.write(traceback.format_exc())
        log(f"    failed: see {error_path}")
        return "failed"
    if os.path.exists(error_path):
        os.remove(error_path)
    _write_json(os.path.join(config.workdir, RESULT_FILE), result)
    return "done"


def _status(workdir: str, trial: Trial) -> str:
    trial_dir = os.path.join(workdir, "trials", trial.trial_id)
    if os.path.exists(os.path.join(trial_dir, RESULT_FILE)):
        return "done"
    if os.path.exists(os.path.join(trial_dir, ERROR_FILE)):
        return "failed"
    return "pending"


def _counts(status: dict[str, str]) -> str:
    counts = {name: sum(value == name for value in status.values()) for name in ("done", "failed", "pending")}
    return ", ".join(f"{count} {name}" for name, count in counts.items())


def _eta(durations: list[float], status: dict[str, str]) -> str:
    if not durations:
        return ""
    remaining = sum(value != "done" for value in status.values())
    return f", ETA {loop.format_duration(remaining * sum(durations) / len(durations))}"
