"""The training loop: batches -> step -> metrics, periodic evaluation, checkpoints, resume.

`run(config)` is the whole main job. Rerunning it on the same workdir resumes from the latest
checkpoint; because batch s and its dropout mask are functions of (seed, s), the resumed run is
bit-identical to an uninterrupted one on CPU. SIGTERM/SIGINT (preemption, Ctrl-C) save a checkpoint
at the current step before exiting.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import signal
import time
from typing import Any, Callable

import jax
import ml_collections

from lmphys import config as config_lib
from lmphys.errors import DataError
from lmphys.models import decode, transformer
from lmphys.tasks import cfg
from lmphys.tasks.base import ModelFns
from lmphys.train import checkpoint, metrics, optim, step as step_lib

TASK_BUILDERS = {"cfg": cfg.task_from_config}


@dataclasses.dataclass
class RunSummary:
    """What a finished (or stopped) run reports."""

    workdir: str
    steps: int
    final_loss: float | None
    eval_metrics: dict[str, float]
    checkpoint_dir: str
    metrics_path: str
    stopped_early: bool = False
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


def format_duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"


class _Progress:
    """Throughput, MFU and ETA for the progress lines.

    tokens/s is measured over the steps since the last line, starting after the compiling first
    step and excluding evaluations, so it is the training speed alone; the ETA clock includes
    evaluations, since the remaining ones will take time too.
    """

    def __init__(self, tokens_per_step: int, flops_per_token: float, peak_flops: float | None):
        self.tokens_per_step, self.flops_per_token, self.peak_flops = tokens_per_step, flops_per_token, peak_flops
        self.start(0)

    def start(self, step: int) -> None:
        """Start the ETA clock and a measuring window at `step`."""
        self._clock = (time.perf_counter(), step)
        self.new_window(step)

    def new_window(self, step: int) -> None:
        self._window = (time.perf_counter(), step)

    def seconds_in_window(self) -> float:
        return time.perf_counter() - self._window[0]

    def measure(self, step: int, end: int) -> tuple[dict[str, float], str]:
        """(values for metrics.jsonl, the speed part of the progress line) for the window up to `step`."""
        now = time.perf_counter()
        window_start, window_step = self._window
        tokens_per_sec = (step - window_step) * self.tokens_per_step / max(now - window_start, 1e-9)
        values = {"tokens_per_sec": tokens_per_sec}
        text = f"tok/s {tokens_per_sec:,.0f}"
        if self.peak_flops:
            values["mfu"] = tokens_per_sec * self.flops_per_token / self.peak_flops
            text += f" mfu {100 * values['mfu']:.1f}%"
        clock_start, clock_step = self._clock
        rate = (step - clock_step) / max(now - clock_start, 1e-9)
        eta = (end - step) / rate if rate > 0 else 0.0
        return values, f"{text} ETA {format_duration(eta)}"


class _StopSignal:
    """Turns SIGTERM/SIGINT into a flag the loop checks between steps (main thread only)."""

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
    """Keep the run's config next to its results; say which fields differ when resuming."""
    path = os.path.join(workdir, "config.json")
    current = json.loads(config.to_json_best_effort())
    if os.path.exists(path):
        with open(path) as handle:
            previous = json.load(handle)
        changed = sorted(_flat(current).items() ^ _flat(previous).items())
        if changed:
            fields = sorted({name for name, _ in changed})
            log(f"note: config differs from the one saved in {path} in: {', '.join(fields)}")
    with open(path, "w") as handle:
        json.dump(current, handle, indent=2, sort_keys=True)


def _flat(tree: dict, prefix: str = "") -> dict[str, str]:
    out = {}
    for name, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{name}."))
        else:
            out[prefix + name] = json.dumps(value, sort_keys=True)
    return out


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


def _run_keys(seed: int) -> jax.Array:
    """Model init, data, dropout, eval batch and eval sampling keys, all from the run's seed."""
    return jax.random.split(jax.random.key(seed), 5)


def _fresh_run(config: ml_collections.ConfigDict):
    """(task, model config, graphdef, optimizer, initial train state) of a validated config."""
    task = TASK_BUILDERS[config.task.name](config.task)
    model_cfg = transformer.ModelConfig.from_config(config.model, vocab_size=task.vocab_size)
    graphdef, params = step_lib.init_model(model_cfg, _run_keys(config.seed)[0])
    optimizer = optim.make_optimizer(config.optim, config.train.steps)
    return task, model_cfg, graphdef, optimizer, step_lib.init_state(params, optimizer)


@dataclasses.dataclass
class TrainedRun:
    """A run's latest checkpoint, ready for analysis: its config, task, model and parameters."""

    config: ml_collections.ConfigDict
    task: Any
    graphdef: Any
    params: Any
    step: int


def load_trained(workdir: str) -> TrainedRun:
    """The config and latest parameters of the run in `workdir` (for probes and reports)."""
    config_path = os.path.join(workdir, "config.json")
    if not os.path.exists(config_path):
        raise DataError(f"{workdir} holds no config.json: is it a run's workdir?")
    with open(config_path) as handle:
        config = ml_collections.ConfigDict(json.load(handle))
    config_lib.validate(config)
    task, _, graphdef, _, state = _fresh_run(config)
    checkpoints = checkpoint.Checkpointer(workdir, config.train.keep_checkpoints)
    step = checkpoints.latest_step()
    if step is None:
        raise DataError(f"{workdir} holds no finished checkpoint yet")
    state = checkpoints.restore(step, state)
    checkpoints.close()
    return TrainedRun(config, task, graphdef, state["params"], step)


def _last_record(metrics_path: str, split: str) -> dict[str, float]:
    records = [r for r in metrics.read_metrics(os.path.dirname(metrics_path)) if r["split"] == split]
    if not records:
        return {}
    return {k: v for k, v in records[-1].items() if k not in ("step", "split")}


def run(
    config: ml_collections.ConfigDict,
    *,
    stop_at_step: int | None = None,
    log: Callable[[str], None] = functools.partial(print, flush=True),
) -> RunSummary:
    """Train (or resume) the run described by `config`; return its summary.

    `stop_at_step` ends this invocation after that step with a checkpoint, as a preemption would;
    the schedule still follows `train.steps`, so a later call continues the same run.
    """
    config_lib.validate(config)
    workdir = os.path.abspath(config.workdir)
    os.makedirs(workdir, exist_ok=True)
    _save_config(config, workdir, log)

    task, model_cfg, graphdef, optimizer, state = _fresh_run(config)
    _, data_key, dropout_key, eval_batch_key, eval_key = _run_keys(config.seed)
    total_steps = config.train.steps

    checkpoints = checkpoint.Checkpointer(workdir, config.train.keep_checkpoints)
    start = checkpoints.latest_step() or 0
    if start:
        state = checkpoints.restore(start, state)
        log(f"resumed from step {start} ({checkpoints.directory})")
    writer = metrics.MetricsWriter(workdir, resume_step=start)

    num_params = transformer.num_params(state["params"])
    tokens_per_step = config.task.batch_size * config.task.seq_len
    progress = _Progress(
        tokens_per_step, transformer.flops_per_token(model_cfg, config.task.seq_len), metrics.device_peak_flops()
    )
    log(
        f"model: {config.model.kind} {config.model.num_layers} layers x {config.model.width} wide, "
        f"{config.model.position} positions, {num_params / 1e6:.2f}M params; task: {config.task.name} "
        f"{config.task.grammar}; {total_steps} steps of {tokens_per_step} tokens on "
        f"{jax.local_devices()[0].device_kind}"
    )

    step_fn = step_lib.make_step_fn(
        graphdef, optimizer, task.batch, data_key, dropout_key, use_dropout=config.model.dropout > 0
    )
    eval_batch = jax.jit(task.batch)(eval_batch_key)  # one fixed held-out batch for eval loss
    eval_step = jax.jit(functools.partial(step_lib.eval_step, graphdef))
    model_fns = make_model_fns(graphdef, config, task)

    def evaluate(at_step: int) -> dict[str, float]:
        started = time.perf_counter()
        values = {k: float(v) for k, v in jax.device_get(eval_step(state["params"], eval_batch)).items()}
        del values["loss_tokens"]
        values.update(task.evaluate(model_fns(state["params"]), jax.random.fold_in(eval_key, at_step)))
        writer.write(at_step, "eval", values)
        shown = ", ".join(f"{k} {v:.4g}" for k, v in sorted(values.items()))
        log(f"eval @ step {at_step}: {shown} ({time.perf_counter() - started:.1f}s)")
        return values

    last_train: dict[str, float] = {}
    eval_values: dict[str, float] = {}
    end = total_steps if stop_at_step is None else min(stop_at_step, total_steps)
    with _StopSignal() as stop:
        current = start
        while current < end:
            state, step_metrics = step_fn(state)
            current += 1
            if current == start + 1:
                jax.block_until_ready(state["step"])
                log(f"compiled and ran the first step in {progress.seconds_in_window():.1f}s")
                progress.start(current)
            due_eval = current % config.train.eval_every == 0 or current == total_steps
            log_due = progress.seconds_in_window() >= config.train.log_every_seconds or current == end
            if log_due or due_eval or stop.received:
                values = {k: float(v) for k, v in jax.device_get(step_metrics).items() if k != "loss_tokens"}
                speed, speed_text = progress.measure(current, end)
                values.update(speed)
                log(
                    f"step {current}/{total_steps} loss {values['loss']:.4f} "
                    f"token acc {values['token_accuracy']:.3f} lr {values['learning_rate']:.2e} {speed_text}"
                )
                writer.write(current, "train", values)
                last_train = values
                if due_eval:
                    eval_values = evaluate(current)
                progress.new_window(current)
            if current % config.train.checkpoint_every == 0:
                checkpoints.save(current, state)
            if stop.received:
                log(f"{stop.received} received: saving a checkpoint at step {current} and stopping")
                break
        stopped_early = current < total_steps
        if not stopped_early and not eval_values:  # a finished run started again: report the results it recorded
            eval_values = _last_record(writer.path, "eval")
        checkpoints.save(current, state)
        checkpoints.close()
    writer.close()
    return RunSummary(
        workdir=workdir,
        steps=current,
        final_loss=last_train.get("loss"),
        eval_metrics=eval_values,
        checkpoint_dir=checkpoints.directory,
        metrics_path=writer.path,
        stopped_early=stopped_early,
        state=state,
    )
