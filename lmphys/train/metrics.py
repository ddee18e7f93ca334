"""Run metrics: JSON lines and TensorBoard events in the workdir, throughput and MFU.

MFU = analytic training FLOPs per token (matmuls x3 for forward and backward, causal attention
halved) x tokens/s, over the device's dense bf16 peak. The peak is known only for the accelerators
listed below; elsewhere (e.g. CPU) MFU is not reported.

A last line of metrics.jsonl cut short (a crash, a full disk) is skipped by readers and trimmed
when the run resumes; a refused write stops the run with one sentence (StorageError).
"""
from __future__ import annotations

import contextlib
import functools
import json
import os
import time
from typing import Mapping

import jax

from lmphys.errors import DataError, StorageError, advice, describe
from lmphys.train import workdir as workdir_lib

# Dense bf16 matmul peaks from the vendors' data sheets, FLOP/s per chip, matched on device_kind.
_PEAK_BF16_FLOPS = {
    "H200": 989e12,
    "H100": 989e12,
    "A100": 312e12,
    "L4": 121e12,
    "TPU v4": 275e12,
    "TPU v5 lite": 197e12,
    "TPU v5e": 197e12,
    "TPU v5p": 459e12,
    "TPU v6 lite": 918e12,
    "TPU v6e": 918e12,
}


def device_peak_flops(device: jax.Device | None = None) -> float | None:
    """The bf16 peak of `device` (default: the first local device), or None if unknown."""
    kind = (device or jax.local_devices()[0]).device_kind
    for name, peak in _PEAK_BF16_FLOPS.items():
        if name.lower() in kind.lower():
            return peak
    return None


class MetricsWriter:
    """Appends `{"step": s, "split": ..., name: value}` lines to metrics.jsonl and to TensorBoard.

    Both are written synchronously, so a refused write stops the run at once with StorageError
    (TensorBoard's own writer thread would die on a full disk and block the next write forever).
    Each record goes down in one write; if the disk takes only part of it, the file is cut back
    to the last whole line.
    """

    def __init__(self, workdir: str, resume_step: int = 0, enabled: bool = True):
        """`enabled=False` (hosts other than process 0 of a multi-host job) writes nothing."""
        self.path = os.path.join(workdir, "metrics.jsonl")
        self.enabled = enabled
        self._fd: int | None = None
        self._events = None
        if not enabled:
            return
        self._drop_lines_after(resume_step)
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            os.makedirs(os.path.join(workdir, "tensorboard"), exist_ok=True)
            self._events = _tensorboard()[0](os.path.join(workdir, "tensorboard", "events"))
        except OSError as error:
            failed = self.path if self._fd is None else os.path.join(workdir, "tensorboard")
            self.close()
            raise _write_failed(failed, error) from None

    def _drop_lines_after(self, step: int) -> None:
        """A resumed run replays the steps after its checkpoint exactly; their old lines would
        appear twice, so they go, and so does a line cut short by a crash."""
        if not os.path.isfile(self.path):  # a directory in its place is reported when it is opened
            return
        with open(self.path) as handle:
            text = handle.read()
        kept = [record for record in _parse(text, self.path) if record["step"] <= step]
        new_text = "".join(json.dumps(record) + "\n" for record in kept)
        if new_text != text:
            workdir_lib.write_atomic(self.path, new_text)

    def write(self, step: int, split: str, values: Mapping[str, float]) -> None:
        if not self.enabled:
            return
        record = {"step": int(step), "split": split}
        record.update({name: float(value) for name, value in values.items()})
        data = (json.dumps(record) + "\n").encode()
        end = os.lseek(self._fd, 0, os.SEEK_END)
        try:
            while data:
                data = data[os.write(self._fd, data):]
        except OSError as error:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, end)
            raise _write_failed(self.path, error) from None
        _, event, scalar = _tensorboard()
        try:
            for name, value in values.items():
                self._events.write_event(event(wall_time=time.time(), step=int(step),
                                               summary=scalar(f"{split}/{name}", float(value))))
            self._events.flush()
        except OSError as error:
            raise _write_failed(os.path.join(os.path.dirname(self.path), "tensorboard"), error) from None

    def close(self) -> None:
        if self._events is not None:
            with contextlib.suppress(OSError):  # a failed write was reported when it happened
                self._events.close()
            self._events = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


@functools.cache
def _tensorboard():
    """tensorboardX's event file writer, event and scalar summary, imported on first use: it pulls
    in protobuf, which the rest of the package doesn't need."""
    from tensorboardX.event_file_writer import EventsWriter
    from tensorboardX.proto.event_pb2 import Event
    from tensorboardX.summary import scalar

    return EventsWriter, Event, scalar


def _write_failed(path: str, error: OSError) -> StorageError:
    return StorageError(f"could not write {path}: {describe(error)}; {advice(error)} and rerun "
                        "to resume from the last checkpoint")


def _parse(text: str, path: str) -> list[dict]:
    """The records of a metrics.jsonl; a last line that is not JSON (cut short when a process died
    or the disk filled mid-write) is left out."""
    lines = text.splitlines()
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if any(rest.strip() for rest in lines[number:]):
                raise DataError(f"{path} line {number} is not JSON ({line[:60]!r}): repair or delete that line") from None
    return records


def read_metrics(workdir: str) -> list[dict]:
    """All records of a run's metrics.jsonl, in order (without a last line cut short)."""
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.isfile(path):
        raise DataError(f"{workdir} holds no metrics.jsonl: is it a run's workdir?")
    with open(path) as handle:
        return _parse(handle.read(), path)


def format_duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"


class Progress:
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
