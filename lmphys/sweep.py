"""Sweeps: a grid of config overrides -> trials with stable ids -> stacked jobs, each trial in its
own workdir.

A sweep config (configs/sweeps/*.py) holds a complete run config as `base`, a `grid` that mirrors
the config's layout with a tuple of values per swept field (a tuple, not a list, so that absl can
narrow it from the command line: --config.grid.seed="(1,)"), the post-training `analyses` to run on
each trial (names from its world's ANALYSES, e.g. "structure" for cfg), and optionally `max_models_per_job` (default 8) and `cases`: settings of several fields
that only go together (model shapes as (num_layers, num_heads, width), a retry kind with its rate),
a list of dicts that mirror the config's layout with one value per field. Each case is combined
with every point of the grid; its fields come first in the trial id ('num_layers=4,num_heads=21,
width=1344,seed=0').

`plan` expands the grid and groups trials that share shapes (train/stack.py: they differ only in
seeds, data order, learning rate, warmup or weight decay) into jobs of up to `max_models_per_job`
models that train as one vmapped step. The grouping depends on the grid alone, so a restarted sweep
rebuilds the same jobs and each resumes bit-exactly. Jobs run one after another on every local
device, or `parallel_jobs` at a time on equal slices of the devices (threads; JAX releases the
GIL while devices compute), or spread over a cluster: job j runs in array task j mod n
(`job_index`, `num_jobs`, read from SLURM when unset; lmphys/cluster.py submits the array job).
In a job of several processes (parallel.initialize_distributed) each job spans every process's
devices, so stacked models can be split over hosts (`parallel.models`).

Restarting skips finished trials (those with a result.json) and resumes interrupted ones from their
checkpoints; a trial that fails (bad config, exception, diverged loss) is recorded in its
error.txt (a diverged one the moment it diverges), the others go on, and a restart tries it again
in a job of its own, so that its partners resume from their own checkpoints. A trial whose workdir
another process holds is skipped as busy; a failed write (full disk) stops the whole sweep.
"""
from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import functools
import itertools
import json
import os
import queue
import threading
import time
import traceback
from typing import Any, Callable, Iterable, Mapping

import jax
import ml_collections

from lmphys import parallel, worlds
from lmphys.errors import ConfigError, LmphysError, StorageError
from lmphys.train import checkpoint, loop, metrics, run_config, runs, stack
from lmphys.train import workdir as workdir_lib

RESULT_FILE = "result.json"
ERROR_FILE = "error.txt"
DEFAULT_MAX_MODELS_PER_JOB = 8
# How often the main thread wakes while jobs train in worker threads, to run Python's signal
# handlers (see _wait_hearing_signals).
SIGNAL_POLL_SECONDS = 0.2


@dataclasses.dataclass(frozen=True)
class Trial:
    """One point of the grid: the dotted fields it overrides, in grid order."""

    overrides: tuple[tuple[str, Any], ...]

    @property
    def trial_id(self) -> str:
        """Stable, readable and filesystem-safe: 'num_layers=4,position=rope'."""
        # A path (init_from: the pretrained run) is named by its last part, the run's own trial id.
        parts = [f"{field.split('.')[-1]}={os.path.basename(str(value)) if field == 'init_from' else value}"
                 for field, value in self.overrides]
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


def _case_fields(case: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """[('model.num_layers', 4), ...] from one case, a dict that mirrors the config's nesting."""
    fields = []
    for name, value in case.items():
        field = f"{prefix}{name}"
        if isinstance(value, (dict, ml_collections.ConfigDict)):
            fields.extend(_case_fields(value, field + "."))
        else:
            fields.append((field, value))
    return fields


def expand(grid: Any, cases: Iterable[Any] = ()) -> list[Trial]:
    """Every combination of the grid's values, the first field varying slowest; with `cases`, each
    case joined to every such combination, the cases varying slowest of all."""
    fields = _flatten(grid)
    names = [field for field, _ in fields]
    if isinstance(cases, (dict, ml_collections.ConfigDict, str)):
        raise ConfigError(f"sweep cases = {cases!r} is invalid: it must be a list of dicts, one per joint setting")
    joint = []
    for index, case in enumerate(cases):
        if not isinstance(case, (dict, ml_collections.ConfigDict)) or not case:
            raise ConfigError(f"sweep cases[{index}] = {case!r} is invalid: it must be a non-empty dict of fields")
        joint.append(tuple(_case_fields(case)))
        both = sorted(set(names) & {field for field, _ in joint[-1]})
        if both:
            raise ConfigError(f"sweep cases[{index}] sets {', '.join(both)}, which the grid sweeps too: "
                              "set each field in one place")
    combos = list(itertools.product(*(values for _, values in fields)))
    trials = [Trial(case + tuple(zip(names, combo))) for case in joint or [()] for combo in combos]
    counts = collections.Counter(trial.trial_id for trial in trials)
    repeated = sorted(trial_id for trial_id, count in counts.items() if count > 1)
    if repeated:
        raise ConfigError(f"sweep trials {', '.join(repeated)} appear more than once: repeated grid values or cases")
    return trials


@dataclasses.dataclass(frozen=True)
class Job:
    """Trials that train stacked in one step (or one trial whose config is invalid)."""

    index: int
    trials: tuple[Trial, ...]

    @property
    def name(self) -> str:
        return self.trials[0].trial_id + (f" +{len(self.trials) - 1} stacked" if len(self.trials) > 1 else "")


def check_sweep_config(sweep: ml_collections.ConfigDict) -> None:
    """ConfigError unless the sweep config has its parts: `workdir`, a run config as `base`, a
    `grid` that mirrors it and a list of `analyses`."""
    if not isinstance(sweep.get("workdir"), str) or not sweep.get("workdir"):
        raise ConfigError("the sweep config has no workdir: set config.workdir to the sweep's directory")
    if not isinstance(sweep.get("base"), ml_collections.ConfigDict):
        raise ConfigError("the sweep config has no base: set config.base to a complete run config "
                          "(e.g. one of configs/cfg/*.py), which the grid then varies")
    if not isinstance(sweep.get("grid"), (dict, ml_collections.ConfigDict)):
        raise ConfigError("the sweep config has no grid: set config.grid to the swept fields, "
                          "each a list of values, e.g. {'seed': [0, 1]}")
    analyses = sweep.get("analyses", None)
    if not isinstance(analyses, (list, tuple)) or not all(isinstance(name, str) for name in analyses):
        raise ConfigError(f"analyses = {analyses!r} is invalid: it must be a list of analysis names, () for none")


def plan(sweep: ml_collections.ConfigDict) -> list[Job]:
    """The sweep's jobs: trials grouped by shape, in grid order, at most max_models_per_job each."""
    check_sweep_config(sweep)
    limit = sweep.get("max_models_per_job", DEFAULT_MAX_MODELS_PER_JOB)
    if not isinstance(limit, int) or limit < 1:
        raise ConfigError(f"max_models_per_job = {limit!r} is invalid: it must be a positive integer")
    groups: dict[str, list[Trial]] = {}
    for trial in expand(sweep.grid, sweep.get("cases", ())):
        config = trial.config(sweep.base, sweep.workdir)
        try:
            run_config.validate(config)
            key = stack.shape_key(config)
        except LmphysError:
            key = "invalid:" + trial.trial_id  # alone, so that its error names only itself
        groups.setdefault(key, []).append(trial)
    chunks = [group[start:start + limit] for group in groups.values() for start in range(0, len(group), limit)]
    return [Job(index, tuple(chunk)) for index, chunk in enumerate(chunks)]


def _analyses(sweep: ml_collections.ConfigDict) -> dict[str, Callable[..., dict]]:
    """The sweep's `analyses` (names the base config's world offers), name -> fn(task, graphdef, params)."""
    world_name = sweep.base.task.name
    offered = worlds.world(world_name).ANALYSES
    unknown = [name for name in sweep.analyses if name not in offered]
    if unknown:
        raise ConfigError(f"analyses = {list(sweep.analyses)!r} is invalid: the {world_name} world offers "
                          f"{', '.join(offered) or 'none'}")
    return {name: offered[name] for name in sweep.analyses}


def trial_status(workdir: str, trial: Trial) -> str:
    """done (result.json), failed (error.txt), interrupted (a checkpoint, no result) or pending."""
    trial_dir = os.path.join(workdir, "trials", trial.trial_id)
    if os.path.exists(os.path.join(trial_dir, RESULT_FILE)):
        return "done"
    if os.path.exists(os.path.join(trial_dir, ERROR_FILE)):
        return "failed"
    if checkpoint.finished_steps(trial_dir):
        return "interrupted"
    return "pending"


class _Board:
    """Trial states shared by the job threads, and the progress line with the ETA."""

    def __init__(self, status: dict[str, str], jobs_to_run: int, parallel_jobs: int, log):
        self.status, self.jobs_left, self.parallel_jobs, self._log = status, jobs_to_run, parallel_jobs, log
        self._durations: list[float] = []
        self._lock = threading.Lock()

    def counts(self) -> str:
        names = ("done", "running", "failed", "interrupted", "pending", "busy")
        counts = {name: sum(value == name for value in self.status.values()) for name in names}
        return ", ".join(f"{count} {name}" for name, count in counts.items() if count or name in ("done", "failed"))

    def _eta(self) -> str:
        if not self._durations or not self.jobs_left:
            return ""
        mean = sum(self._durations) / len(self._durations)
        waves = -(-self.jobs_left // self.parallel_jobs)
        return f"; ETA {metrics.format_duration(waves * mean)}"

    def update(self, job: Job, new: Mapping[str, str], seconds: float | None = None) -> None:
        with self._lock:
            self.status.update(new)
            if seconds is not None:
                self._durations.append(seconds)
                self.jobs_left -= 1
            verb = "started" if seconds is None else f"ended in {metrics.format_duration(seconds)}"
            self._log(f"[job {job.index}] {job.name} {verb} -- trials: {self.counts()}{self._eta()}")


def run_sweep(
    sweep: ml_collections.ConfigDict,
    *,
    job_index: int = 0,
    num_jobs: int = 1,
    parallel_jobs: int = 1,
    log: Callable[[str], None] = functools.partial(print, flush=True),
) -> dict[str, str]:
    """Run the unfinished trials of this process's share of the jobs; return {trial_id: state}
    for those trials (done, failed, stopped, or busy: another process trains them)."""
    check_sweep_config(sweep)
    analyses = _analyses(sweep)
    if not isinstance(num_jobs, int) or num_jobs < 1:
        raise ConfigError(f"num_jobs = {num_jobs!r} is invalid: it must be a positive integer")
    if not 0 <= job_index < num_jobs:
        raise ConfigError(f"job_index = {job_index} is invalid: it must lie in [0, num_jobs = {num_jobs})")
    workdir = os.path.abspath(sweep.workdir)
    sweep = sweep.copy_and_resolve_references()
    sweep.workdir = workdir
    jobs = [job for job in plan(sweep) if job.index % num_jobs == job_index]
    slices = _device_slices(parallel_jobs)
    workdir_lib.prepare(workdir)
    status = {trial.trial_id: trial_status(workdir, trial) for job in jobs for trial in job.trials}
    to_run = [job for job in jobs if any(status[trial.trial_id] != "done" for trial in job.trials)]
    share = f" (array task {job_index} of {num_jobs})" if num_jobs > 1 else ""
    board = _Board(status, len(to_run), parallel_jobs, log)
    log(f"sweep {workdir}{share}: {len(status)} trials in {len(jobs)} jobs, {len(to_run)} to run, "
        f"{parallel_jobs} at a time on {len(slices[0])} device(s) each -- trials: {board.counts()}")

    free_slices: queue.Queue = queue.Queue()
    for devices in slices:
        free_slices.put(devices)
    with loop.StopSignal() as stop:

        def run_job(job: Job) -> None:
            if stop.received:
                return
            devices = free_slices.get()
            try:
                started = time.perf_counter()
                board.update(job, {t.trial_id: "running" for t in job.trials if status[t.trial_id] != "done"})
                prefix = f"[job {job.index}]    " if parallel_jobs > 1 else "    "
                outcome = _run_job(job, sweep, analyses, devices, stop, lambda line: log(prefix + line))
                board.update(job, outcome, time.perf_counter() - started)
            finally:
                free_slices.put(devices)

        with concurrent.futures.ThreadPoolExecutor(max_workers=parallel_jobs) as pool:
            futures = [pool.submit(run_job, job) for job in to_run]
            _wait_hearing_signals(futures)
            for future in futures:
                future.result()
    if stop.received:
        log(f"sweep stopped by {stop.received}; rerun the same command to resume")
    final = {trial_id: ("stopped" if value in ("running", "interrupted", "pending") and stop.received else value)
             for trial_id, value in status.items()}
    log(f"sweep {workdir}: trials: {board.counts()}")
    return final


def _wait_hearing_signals(futures: list[concurrent.futures.Future]) -> None:
    """Wait for every future, waking each SIGNAL_POLL_SECONDS. Python runs signal handlers in the
    main thread only, when it next runs Python code; the kernel may hand SIGTERM to any thread (an
    XLA worker, a job's thread), and a main thread blocked in a wait without a timeout would then
    run the StopSignal handler only after the last job ended: a preempted sweep would train on
    until SLURM's SIGKILL instead of saving a checkpoint."""
    pending = set(futures)
    while pending:
        _, pending = concurrent.futures.wait(pending, timeout=SIGNAL_POLL_SECONDS)


def _device_slices(parallel_jobs: int) -> list[list]:
    """The device groups jobs run on: slices of this host's devices, or, in a job of several
    processes (a multi-host sweep), every process's devices for one job at a time."""
    if jax.process_count() == 1:
        return parallel.DeviceSlices(parallel_jobs).split()
    if parallel_jobs != 1:
        raise ConfigError(f"parallel_jobs = {parallel_jobs} is invalid: a sweep of {jax.process_count()} processes "
                          "runs its jobs one at a time over all of their devices")
    return [jax.devices()]


def _run_job(job: Job, sweep, analyses, devices, stop, log) -> dict[str, str]:
    """Train the job's unfinished trials stacked, then record each one's result or error. A trial
    that failed before is retried in a job of its own: stacked with the others, its missing or
    older checkpoints would pull their shared resume step back (to 0 when it diverged before its
    first checkpoint)."""
    trials = [trial for trial in job.trials if trial_status(sweep.workdir, trial) != "done"]
    failed = [trial for trial in trials if trial_status(sweep.workdir, trial) == "failed"]
    healthy = [trial for trial in trials if trial not in failed]
    outcome: dict[str, str] = {}
    for group in ([healthy] if healthy else []) + [[trial] for trial in failed]:
        if stop.received:
            break
        outcome.update(_run_trials(group, sweep, analyses, devices, stop, log))
    return outcome


def _run_trials(trials: list[Trial], sweep, analyses, devices, stop, log) -> dict[str, str]:
    configs = [trial.config(sweep.base, sweep.workdir) for trial in trials]
    outcome: dict[str, str] = {}

    def record_divergence(config: ml_collections.ConfigDict, reason: str) -> None:
        """Called the moment a model diverges, so that a sweep killed later still knows."""
        _record_failure(config, reason + "\n", log)

    try:
        summaries = loop.run_group(configs, log=log, stop=stop, devices=devices, on_failure=record_divergence)
    except workdir_lib.WorkdirBusy as error:  # another process trains them: not a failure of theirs
        log(f"skipped: {error}")
        return {trial.trial_id: "busy" for trial in trials}
    except StorageError:
        stop.received = stop.received or "a failed write"  # the disk would fail every other job too
        raise
    except LmphysError as error:  # a user error: its one sentence says it all
        for trial, config in zip(trials, configs):
            outcome[trial.trial_id] = _record_failure(config, f"{error}\n", log)
        return outcome
    except Exception:  # one failing job is recorded and must not stop the others
        error = traceback.format_exc()
        for trial, config in zip(trials, configs):
            outcome[trial.trial_id] = _record_failure(config, error, log)
        return outcome
    for trial, config, summary in zip(trials, configs, summaries):
        if summary.failure:
            outcome[trial.trial_id] = "failed"  # recorded when it happened
        elif summary.stopped_early:
            outcome[trial.trial_id] = "interrupted"
        else:
            outcome[trial.trial_id] = _record_result(trial, config, summary, analyses, log)
    return outcome


def _record_failure(config: ml_collections.ConfigDict, error: str, log) -> str:
    path = os.path.join(config.workdir, ERROR_FILE)
    if parallel.is_primary():
        workdir_lib.prepare(config.workdir)
        workdir_lib.write_atomic(path, error)
    log(f"failed: {error.strip().splitlines()[-1]} (see {path})")
    return "failed"


def _record_result(trial: Trial, config, summary: loop.RunSummary, analyses: dict[str, Callable[..., dict]],
                   log) -> str:
    try:
        run = runs.trained_from_state(config, summary.state) if analyses else None
        result = {
            "trial_id": trial.trial_id,
            "overrides": dict(trial.overrides),
            "steps": summary.steps,
            "final_loss": summary.final_loss,
            "eval": summary.eval_metrics,
            "analyses": {name: analyse(run.task, run.graphdef, run.params) for name, analyse in analyses.items()},
        }
    except Exception:
        return _record_failure(config, traceback.format_exc(), log)
    error_path = os.path.join(config.workdir, ERROR_FILE)
    if parallel.is_primary():
        if os.path.exists(error_path):
            os.remove(error_path)
        workdir_lib.write_atomic(os.path.join(config.workdir, RESULT_FILE), json.dumps(result, indent=2, sort_keys=True))
    return "done"


def status_lines(sweep: ml_collections.ConfigDict) -> list[str]:
    """A view of a sweep's progress from its files, without running anything (for --status)."""
    workdir = os.path.abspath(sweep.workdir)
    lines, counts = [], {}
    for job in plan(sweep):
        for trial in job.trials:
            state = trial_status(workdir, trial)
            counts[state] = counts.get(state, 0) + 1
            detail = ""
            if state == "interrupted":
                steps = checkpoint.finished_steps(os.path.join(workdir, "trials", trial.trial_id))
                detail = f" at step {steps[-1]}/{trial.config(sweep.base, workdir).train.steps}"
            lines.append(f"job {job.index:3d}  {state:11s}{detail:>16s}  {trial.trial_id}")
    summary = ", ".join(f"{count} {state}" for state, count in sorted(counts.items()))
    return [f"sweep {workdir}: {summary}"] + lines
