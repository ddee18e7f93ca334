"""Run metrics: JSON lines and TensorBoard events in the workdir, throughput and MFU.

MFU = analytic training FLOPs per token (matmuls x3 for forward and backward, causal attention
halved) x tokens/s, over the device's dense bf16 peak. The peak is known only for the accelerators
listed below; elsewhere (e.g. CPU) MFU is not reported.
"""
from __future__ import annotations

import json
import os
import time
from typing import Mapping

import jax

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
    """Appends `{"step": s, "split": ..., name: value}` lines to metrics.jsonl and to TensorBoard."""

    def __init__(self, workdir: str, resume_step: int = 0, enabled: bool = True):
        """`enabled=False` (hosts other than process 0 of a multi-host job) writes nothing."""
        self.path = os.path.join(workdir, "metrics.jsonl")
        self.enabled = enabled
        self._tensorboard = None
        if not enabled:
            return
        os.makedirs(workdir, exist_ok=True)
        self._drop_lines_after(resume_step)
        # Imported here: tensorboardX pulls in protobuf, which the rest of the package doesn't need.
        from tensorboardX import SummaryWriter

        self._tensorboard = SummaryWriter(os.path.join(workdir, "tensorboard"))

    def _drop_lines_after(self, step: int) -> None:
        """A resumed run replays the steps after its checkpoint exactly; their old lines would
        appear twice, so they go."""
        if not os.path.exists(self.path):
            return
        with open(self.path) as handle:
            kept = [line for line in handle if line.strip() and json.loads(line)["step"] <= step]
        with open(self.path, "w") as handle:
            handle.writelines(kept)

    def write(self, step: int, split: str, values: Mapping[str, float]) -> None:
        if not self.enabled:
            return
        record = {"step": int(step), "split": split}
        record.update({name: float(value) for name, value in values.items()})
        with open(self.path, "a") as handle:
            handle.write(json.dumps(record) + "\n")
        for name, value in values.items():
            self._tensorboard.add_scalar(f"{split}/{name}", float(value), int(step))

    def close(self) -> None:
        if self._tensorboard is not None:
            self._tensorboard.close()


def read_metrics(workdir: str) -> list[dict]:
    """All records of a run's metrics.jsonl, in order."""
    with open(os.path.join(workdir, "metrics.jsonl")) as handle:
        return [json.loads(line) for line in handle if line.strip()]


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
