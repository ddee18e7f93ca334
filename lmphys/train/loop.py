"""The training loop: K >= 1 stacked models, one sharded step, per-model metrics, evaluation,
checkpoints and resume.

`run(config)` is the whole main job. `run_group(configs)` trains several configs that share shapes
(train/stack.py) as one vmapped step on one mesh (parallel.py); each model still writes its own
workdir (config.json, metrics.jsonl, TensorBoard, checkpoints) exactly as a lone run would, so any
of them can be analysed, resumed or rerun alone later.

Rerunning on the same workdirs resumes from the latest checkpoint; because batch s and its dropout
mask are functions of (seed, s), the resumed run is bit-identical to an uninterrupted one on CPU.
Worlds made in Python feed the step from the host (host_data.py), with the same guarantee.
SIGTERM/SIGINT (preemption, Ctrl-C) save a checkpoint at the current step before exiting. A model
whose loss or parameters stop being finite is stopped with a message and keeps its last good
checkpoint; the other models of its group go on.

Each workdir is locked while its run trains (train/workdir.py); config.json is written, whole,
only once the run is accepted: after its checkpoint restored, so a rejected config never replaces
the run's own. A corrupt latest checkpoint is set aside for the newest one that restores.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import os
import signal
import time
from typing import Any, Callable, Sequence

import jax
import ml_collections

from lmphys import config as config_lib, parallel
from lmphys.errors import EXIT_FAILED, LmphysError
from lmphys.models import sizes
from lmphys.train import checkpoint, host_data, metrics, run_config, runs, stack, step as step_lib
from lmphys.train import workdir as workdir_lib


class TrainingDiverged(LmphysError):
    """The loss or the parameters of a run became NaN or infinite."""

    exit_status = EXIT_FAILED


@dataclasses.dataclass
class RunSummary:
    """What a finished (or stopped, or diverged) run reports."""

    workdir: str
    steps: int
    final_loss: float | None
    eval_metrics: dict[str, float]
    checkpoint_dir: str
    metrics_path: str
    stopped_early: bool = False
    failure: str | None = None  # why the run stopped, when its numbers stopped being finite
    state: Any = dataclasses.field(default=None, repr=False)  # the final train state pytree

    def lines(self) -> list[str]:
        out = [f"done: {self.steps} steps" + (" (stopped early)" if self.stopped_early else "")]
        if self.final_loss is not None:
            out.append(f"final train loss: {self.final_loss:.4f}")
        for name, value in sorted(self.eval_metrics.items()):
            out.append(f"eval {name}: {value:.4g}")
        out.append(f"metrics: {self.metrics_path} (TensorBoard: {os.path.join(self.workdir, 'tensorboard')})")
        out.append(f"checkpoints: {self.checkpoint_dir}")
        return out


class StopSignal:
    """Turns SIGTERM/SIGINT into a flag that loops check between steps. Handlers can only be
    installed from the main thread, and they run there, so a sweep running jobs in threads enters
    one in the main thread, hands it to every job, and keeps the main thread waking
    (sweep._wait_hearing_signals)."""

    def __init__(self):
        self.received: str | None = None
        self._previous = {}

    def __enter__(self):
        try:
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        except ValueError:  # not the main thread: leave signals alone
            self._previous = {}
        return self

    def _handle(self, signum, _frame):
        self.received = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _save_config(config: ml_collections.ConfigDict, workdir: str, log: Callable[[str], None]) -> None:
    """Keep the run's config next to its results (whole or not at all); say which fields differ
    when resuming. Called once the run is accepted (its checkpoint restored), so a rejected
    config never replaces the one the run was trained with."""
    path = os.path.join(workdir, "config.json")
    current = json.loads(config.to_json_best_effort())
    if os.path.isfile(path):
        try:
            with open(path) as handle:
                previous = json.load(handle)
        except (OSError, ValueError) as error:
            log(f"note: {path} was unreadable ({type(error).__name__}); writing this run's config in its place")
            previous = current
        changed = config_lib.flat_fields(current).items() ^ config_lib.flat_fields(previous).items()
        if changed:
            fields = sorted({name for name, _ in changed})
            log(f"note: config differs from the one saved in {path} in: {', '.join(fields)}")
    if parallel.is_primary():
        workdir_lib.write_atomic(path, json.dumps(current, indent=2, sort_keys=True))


def _last_record(metrics_path: str, split: str) -> dict[str, float]:
    records = [r for r in metrics.read_metrics(os.path.dirname(metrics_path)) if r["split"] == split]
    if not records:
        return {}
    return {k: v for k, v in records[-1].items() if k not in ("step", "split")}


class _Member:
    """One of the stacked models: its config, keys and files, and how its training went. Its
    workdir is locked (by process 0 of a multi-host job) until `cleanup` closes."""

    def __init__(self, config: ml_collections.ConfigDict, cleanup: contextlib.ExitStack):
        self.config = config
        self.workdir = workdir_lib.prepare(config.workdir)
        if parallel.is_primary():
            cleanup.enter_context(workdir_lib.WorkdirLock(self.workdir))
        self.keys = runs.run_keys(config)
        # Runs saved before the field existed have no save timeout in their config.json.
        timeout = config.train.get("save_timeout_seconds", checkpoint.DEFAULT_SAVE_TIMEOUT_SECONDS)
        self.checkpoints = checkpoint.Checkpointer(self.workdir, config.train.keep_checkpoints,
                                                   save_timeout_seconds=timeout)
        cleanup.callback(self.checkpoints.close)
        self.writer: metrics.MetricsWriter | None = None
        self.last_train: dict[str, float] = {}
        self.eval_values: dict[str, float] = {}
        self.failure: str | None = None

    @property
    def name(self) -> str:
        return os.path.basename(self.workdir)

    def summary(self, steps: int, stopped_early: bool, state) -> RunSummary:
        return RunSummary(
            workdir=self.workdir,
            steps=steps,
            final_loss=self.last_train.get("loss"),
            eval_metrics=self.eval_values,
            checkpoint_dir=self.checkpoints.directory,
            metrics_path=self.writer.path,
            stopped_early=stopped_early,
            failure=self.failure,
            state=state,
        )


def _resume(members: list[_Member], parts: runs.RunParts, log) -> tuple[int, list]:
    """(step, states) to train on from: the latest checkpoint every stacked model has and can
    restore, or step 0 and fresh states. A corrupt checkpoint is moved aside with one line saying
    so and an older one tried; a mismatch (CheckpointError) stops the run."""
    while True:
        start = _common_start(members, log)
        states = [runs.initial_state(parts, member.config) for member in members]
        if not start:
            return 0, states
        restored = []
        for member, state in zip(members, states):
            try:
                restored.append(member.checkpoints.restore(start, state))
            except checkpoint.CorruptCheckpoint as error:
                moved = member.checkpoints.set_aside(error.step, error.details)
                log(f"skipped {error}: moved it to {moved} and resuming from an older one")
                break
        else:
            return start, restored


def _common_start(members: list[_Member], log) -> int:
    """The latest step that every stacked model has a checkpoint of (0 if none).

    A crash while the K checkpoints of a step are being written can leave some models one
    checkpoint ahead; resuming all of them from the step they share replays the rest exactly.
    """
    saved = [set(member.checkpoints.all_steps()) for member in members]
    common = set.intersection(*saved)
    start = max(common, default=0)
    ahead = [member.name for member, steps in zip(members, saved) if steps and max(steps) > start]
    if ahead:
        log(f"resuming all {len(members)} stacked models from step {start}, the last checkpoint they all have "
            f"({', '.join(ahead)} had later ones)")
    return start


def _per_model(values: Sequence[float], spec: str) -> str:
    return " ".join(format(value, spec) for value in values)


def run_group(
    configs: Sequence[ml_collections.ConfigDict],
    *,
    stop_at_step: int | None = None,
    log: Callable[[str], None] = functools.partial(print, flush=True),
    stop: StopSignal | None = None,
    devices: Sequence[jax.Device] | None = None,
    on_failure: Callable[[ml_collections.ConfigDict, str], None] | None = None,
) -> list[RunSummary]:
    """Train (or resume) K configs that share shapes as one stacked job; one summary per config.

    `stop_at_step` ends this invocation after that step with checkpoints, as a preemption would;
    the schedules still follow `train.steps`, so a later call continues the same runs. `devices`
    (default: all) is the slice of devices the job's mesh covers; `stop` is a StopSignal entered by
    the caller (default: this call handles SIGTERM/SIGINT itself). `on_failure(config, reason)` is
    called the moment a model's numbers stop being finite (a sweep records the failure at once).
    Raises WorkdirBusy if another process trains in one of the workdirs, StorageError if a
    checkpoint or metric cannot be written.
    """
    if not parallel.is_primary():
        log = lambda line: None  # noqa: E731 (one voice per job: process 0 speaks)
    configs = [_with_resolved_steps(config, log) for config in configs]
    stack.check_stackable(configs)
    mesh = parallel.make_mesh(configs[0].parallel, len(configs), devices)
    parallel.check_batch(mesh, configs[0].task.batch_size)
    handles_signals = stop is None
    stop = stop or StopSignal()
    # Arrays made outside the step (initial states, eval batches, prompts) live on the job's first
    # device, so jobs on different device slices never mix devices.
    with (jax.default_device(parallel.first_local_device(mesh)), (stop if handles_signals else contextlib.nullcontext()),
          contextlib.ExitStack() as cleanup):
        return _train(configs, mesh, stop_at_step, log, stop, on_failure, cleanup)


def _with_resolved_steps(config: ml_collections.ConfigDict, log: Callable[[str], None]) -> ml_collections.ConfigDict:
    """Validate; a task that counts exposures (Part 3.3) or tokens (Part 2.2) sets train.steps from
    them, and one line says so, since the config's own train.steps is then not used."""
    run_config.validate(config)
    task = runs.build_task(config)
    steps = runs.steps_to_train(task, config)
    if steps != config.train.steps:  # a task that sets its steps has `steps_from`, the words for what sets them
        log(f"{config.workdir}: train.steps = {steps}, set by {task.steps_from}; the config's train.steps = "
            f"{config.train.steps} is not used")
        config = config.copy_and_resolve_references()
        config.train.steps = steps
    return config


def _train(configs, mesh, stop_at_step, log, stop, on_failure, cleanup: contextlib.ExitStack) -> list[RunSummary]:
    first = configs[0]
    parts = runs.build(first)
    members = [_Member(config, cleanup) for config in configs]
    start, states = _resume(members, parts, log)
    if start:
        where = members[0].checkpoints.directory if len(members) == 1 else f"{len(members)} workdirs"
        log(f"resumed from step {start} ({where})")
    for member in members:
        _save_config(member.config, member.workdir, log)
        member.writer = metrics.MetricsWriter(member.workdir, resume_step=start, enabled=parallel.is_primary())
        cleanup.callback(member.writer.close)

    num_models = len(members)
    num_params = sizes.num_params(step_lib.model_params(states[0]))
    trained = sizes.num_params(states[0]["params"])
    params_text = f"{num_params / 1e6:.2f}M params" + (f" ({trained / 1e6:.3f}M trained: LoRA)" if trained < num_params else "")
    state = parallel.shard_state(mesh, stack.stack(states))
    del states  # the sharded copy is the one that trains
    per_model = parallel.per_model_sharding(mesh)
    data_keys = parallel.put(stack.stack([m.keys["data"] for m in members]), per_model)
    dropout_keys = parallel.put(stack.stack([m.keys["dropout"] for m in members]), per_model)

    total_steps = first.train.steps
    tokens_per_step = num_models * first.task.batch_size * first.task.seq_len
    device_peak = metrics.device_peak_flops()
    progress = metrics.Progress(
        tokens_per_step,
        sizes.flops_per_token(parts.model_cfg, first.task.seq_len),
        None if device_peak is None else device_peak * mesh.size,
    )
    stacked = f"{num_models} stacked models, " if num_models > 1 else ""
    layout = "" if mesh.size == 1 else f" ({', '.join(f'{axis} {size}' for axis, size in mesh.shape.items())})"
    log(
        f"model: {first.model.kind} {first.model.num_layers} layers x {first.model.width} wide, "
        f"{first.model.position} positions, {params_text}; task: {_describe(first, parts.task)}; {stacked}{total_steps} steps of {tokens_per_step} tokens on "
        f"{mesh.size} x {mesh.devices.flat[0].device_kind}{layout}"
    )

    end = total_steps if stop_at_step is None else min(stop_at_step, total_steps)
    host_fed = hasattr(parts.task, "host_batch")  # a world made in Python (host_data.py)
    batch_shape = (num_models, first.task.batch_size, first.task.seq_len)
    host = None
    if host_fed and start < end:  # its workers (if any) start now, making this host's block alone
        models, rows = parallel.process_block(parallel.stacked_rows_sharding(mesh), batch_shape)[:2]
        seeds = [host_data.data_seed(member.config) for member in members[models]]
        rows = None if rows == slice(0, first.task.batch_size) else rows  # one host: the task's whole batches
        host = cleanup.enter_context(host_data.HostBatches(parts.task, seeds, start, parts.task.data_workers,
                                                           prefetch=max(4, 2 * parts.task.data_workers), rows=rows))
    task_data = getattr(parts.task, "data", None)
    step_fn = step_lib.make_step_fn(
        parts.graphdef, parts.optimizer, parts.schedule, getattr(parts.task, "batch", None),
        first.model.dropout > 0, mesh, state, task_data, host_batches=host_fed,
    )
    finite_models = jax.jit(step_lib.finite_models)
    eval_step = jax.jit(functools.partial(step_lib.eval_step, parts.graphdef))
    model_fns = runs.make_model_fns(parts.graphdef, first, parts.task)
    if host_fed:  # fixed held-out batches
        eval_batches = host_data.held_out_batches(parts.task, [member.config.seed for member in members])
    else:
        make_eval_batch = jax.jit(parts.task.batch) if task_data is None else jax.jit(lambda key: parts.task.batch(key, task_data))
        eval_batches = [make_eval_batch(member.keys["eval_batch"]) for member in members]

    def step_inputs(at_step: int) -> tuple:
        """The host batch of `at_step`, placed on the mesh; nothing when the step makes its own."""
        if host is None:
            return ()
        return (host_data.on_mesh(host.get(at_step), parallel.stacked_rows_sharding(mesh), batch_shape, at_step),)

    def alive() -> list[tuple[int, _Member]]:
        return [(index, member) for index, member in enumerate(members) if member.failure is None]

    def local_copy(tree, index: int):
        return parallel.local_copy_of_model(mesh, tree, index)

    def stop_member(member: _Member, reason: str) -> None:
        kept = member.checkpoints.latest_step()
        where = f"the last good checkpoint is step {kept} in {member.checkpoints.directory}" if kept else "no checkpoint was kept"
        member.failure = f"{reason}; {where}"
        log(f"{member.name}: {member.failure}")
        if on_failure is not None:
            on_failure(member.config, member.failure)

    def evaluate(index: int, member: _Member, at_step: int) -> dict[str, float]:
        started = time.perf_counter()
        params = step_lib.model_params(local_copy(_without_optimizer(state), index))
        values = {k: float(v) for k, v in jax.device_get(eval_step(params, eval_batches[index])).items()}
        del values["loss_tokens"]
        values.update(parts.task.evaluate(model_fns(params), jax.random.fold_in(member.keys["eval"], at_step)))
        member.writer.write(at_step, "eval", values)
        shown = ", ".join(f"{k} {v:.4g}" for k, v in sorted(values.items()))
        prefix = f"{member.name}: " if num_models > 1 else ""
        log(f"{prefix}eval @ step {at_step}: {shown} ({time.perf_counter() - started:.1f}s)")
        return values

    def save(at_step: int) -> None:
        """Checkpoint every model whose parameters are still finite; stop the others."""
        finite = parallel.fetch(mesh, finite_models(state["params"]))
        for index, member in alive():
            if not finite[index]:
                stop_member(member, f"its parameters became NaN or infinite by step {at_step}")
            else:
                member.checkpoints.save(at_step, stack.unstack(state, index))

    current = start
    while current < end and alive():
        state, step_metrics = step_fn(state, data_keys, dropout_keys, *step_inputs(current))
        current += 1
        if current == start + 1:
            jax.block_until_ready(state["step"])
            log(f"compiled and ran the first step in {progress.seconds_in_window():.1f}s")
            progress.start(current)
        due_eval = current % first.train.eval_every == 0 or current == total_steps
        log_due = progress.seconds_in_window() >= first.train.log_every_seconds or current == end
        if log_due or due_eval or stop.received:
            values = {k: v for k, v in parallel.fetch(mesh, step_metrics).items() if k != "loss_tokens"}
            speed, speed_text = progress.measure(current, end)
            shown = [index for index, _ in alive()]
            for index, member in alive():
                record = {name: float(column[index]) for name, column in values.items()}
                record.update(speed)
                member.writer.write(current, "train", record)
                member.last_train = record
                if not math.isfinite(record["loss"]):
                    stop_member(member, f"the training loss became {record['loss']} at step {current}")
            precision = (".4f", ".3f", ".2e") if num_models == 1 else (".3f", ".2f", ".1e")
            log(
                f"step {current}/{total_steps} loss {_per_model(values['loss'][shown], precision[0])} "
                f"token acc {_per_model(values['token_accuracy'][shown], precision[1])} "
                f"lr {_per_model(values['learning_rate'][shown], precision[2])} {speed_text}"
            )
            if due_eval:
                for index, member in alive():
                    member.eval_values = evaluate(index, member, current)
            progress.new_window(current)
        if current % first.train.checkpoint_every == 0:
            save(current)
        if stop.received:
            log(f"{stop.received} received: saving a checkpoint at step {current} and stopping")
            break
    stopped_early = current < total_steps
    save(current)
    summaries = []
    for index, member in enumerate(members):
        member.checkpoints.close()  # raises StorageError if the last save failed
        member.writer.close()
        if not stopped_early and not member.eval_values and member.failure is None:
            member.eval_values = _last_record(member.writer.path, "eval")  # a finished run started again
        summaries.append(member.summary(current, stopped_early and member.failure is None, local_copy(state, index)))
    return summaries


def _without_optimizer(state: step_lib.TrainState) -> step_lib.TrainState:
    """What evaluation needs: the parameters (and frozen ones under LoRA), not the optimizer."""
    return {name: value for name, value in state.items() if name in ("params", "frozen")}


def _describe(config: ml_collections.ConfigDict, task) -> str:
    if hasattr(task, "describe"):
        return task.describe()
    return f"{config.task.name} {config.task.grammar}"


def run(
    config: ml_collections.ConfigDict,
    *,
    stop_at_step: int | None = None,
    log: Callable[[str], None] = functools.partial(print, flush=True),
) -> RunSummary:
    """Train (or resume) the run described by `config`; return its summary. Raises
    TrainingDiverged (keeping the last good checkpoint) if its numbers stop being finite."""
    summary = run_group([config], stop_at_step=stop_at_step, log=log)[0]
    if summary.failure:
        raise TrainingDiverged(summary.failure)
    return summary
