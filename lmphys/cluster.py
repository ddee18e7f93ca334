"""A sweep as a SLURM array job: the batch script, its resources, and its submission.

`scripts/sweep.py --submit=slurm` calls `submit_array`: one array task per stacked job of the
sweep (sweep.plan) that still has unfinished trials, task id = job index, each task running
`scripts/sweep.py` with the same flags and `--job_index=$SLURM_ARRAY_TASK_ID`. The resources of a
task come from the sweep config's optional `slurm` section (fields and defaults in `SLURM_FIELDS`):

    sweep.slurm = ml_collections.ConfigDict(dict(
        gpus_per_task=1, cpus_per_task=8, mem="64G", time="04:00:00", partition="gpu",
        max_running=0,            # at most this many tasks at once (0: no limit)
        sbatch=["--account=lab"], # further sbatch options, one per line
        setup=["module load cuda"]))  # shell lines run before the sweep starts

The script asks for `--requeue`: a task that SLURM preempts or requeues gets SIGTERM, saves a
checkpoint (train/loop.py) and, started again, resumes there. Its output goes to
`<sweep workdir>/slurm/<job id>_<task>.out`, appended across restarts.
"""
from __future__ import annotations

import dataclasses
import os
import shlex
import shutil
import subprocess
from typing import Sequence

import ml_collections

from lmphys import sweep as sweep_lib
from lmphys.errors import ConfigError, LmphysError

# The `slurm` section of a sweep config: field -> default (0 or empty: leave it to the cluster).
SLURM_FIELDS = {
    "gpus_per_task": 0,
    "cpus_per_task": 0,
    "mem": "",
    "time": "",
    "partition": "",
    "max_running": 0,
    "sbatch": (),
    "setup": (),
}


class SubmitError(LmphysError):
    """sbatch is missing or refused the array job."""


@dataclasses.dataclass(frozen=True)
class Submission:
    """A submitted array job: its id, the jobs its tasks run, its batch script and log files."""

    job_id: str
    job_indices: tuple[int, ...]
    script: str
    log_dir: str

    def lines(self, status_command: str) -> list[str]:
        """What to tell the user: the id, where the logs go, how to watch and cancel."""
        return [
            f"submitted SLURM array job {self.job_id}: {len(self.job_indices)} tasks, one per stacked job "
            f"(task id = job index: {_ranges(self.job_indices)})",
            f"  script: {self.script}",
            f"  logs:   {os.path.join(self.log_dir, self.job_id + '_<task>.out')}",
            f"  watch:  squeue -j {self.job_id}",
            f"          {status_command}",
            f"  cancel: scancel {self.job_id}",
        ]


def slurm_settings(sweep: ml_collections.ConfigDict) -> dict:
    """The sweep's `slurm` section over the defaults, checked field by field."""
    given = dict(sweep.get("slurm", None) or {})
    unknown = sorted(set(given) - set(SLURM_FIELDS))
    if unknown:
        raise ConfigError(f"slurm.{unknown[0]} is not a field of a sweep's slurm section: it has "
                          f"{', '.join(SLURM_FIELDS)}")
    settings = {**SLURM_FIELDS, **given}
    for field in ("gpus_per_task", "cpus_per_task", "max_running"):
        value = settings[field]
        if not isinstance(value, int) or value < 0:
            raise ConfigError(f"slurm.{field} = {value!r} is invalid: it must be an integer, 0 or more")
    for field in ("mem", "time", "partition"):
        value = settings[field]
        if not isinstance(value, str) or any(char.isspace() for char in value):
            raise ConfigError(f"slurm.{field} = {value!r} is invalid: it must be a string without spaces")
    for field in ("sbatch", "setup"):
        value = settings[field]
        if isinstance(value, str) or not all(isinstance(line, str) and "\n" not in line for line in value):
            raise ConfigError(f"slurm.{field} = {value!r} is invalid: it must be a list of one-line strings")
        settings[field] = tuple(value)
    return settings


def array_script(sweep: ml_collections.ConfigDict, job_indices: Sequence[int], command: Sequence[str],
                 chdir: str) -> str:
    """The batch script of the array job: resources from `slurm_settings`, one task per index of
    `job_indices`, each running `command` (the sweep's own command line) for its job."""
    settings = slurm_settings(sweep)
    log_dir = os.path.join(os.path.abspath(sweep.workdir), "slurm")
    name = os.path.basename(os.path.normpath(sweep.workdir)) or "sweep"
    array = _ranges(job_indices) + (f"%{settings['max_running']}" if settings["max_running"] else "")
    options = [f"--job-name=lmphys-{name}", f"--array={array}", "--ntasks=1", f"--chdir={chdir}",
               f"--output={os.path.join(log_dir, '%A_%a.out')}", "--open-mode=append", "--requeue"]
    for field, option in (("gpus_per_task", "--gpus-per-task"), ("cpus_per_task", "--cpus-per-task"),
                          ("mem", "--mem"), ("time", "--time"), ("partition", "--partition")):
        if settings[field]:
            options.append(f"{option}={settings[field]}")
    options += [line.removeprefix("#SBATCH").strip() for line in settings["sbatch"]]
    lines = ["#!/bin/bash", "# Written by scripts/sweep.py --submit=slurm: task i runs job i of the sweep."]
    lines += [f"#SBATCH {option}" for option in options]
    lines += list(settings["setup"])
    # exec: the sweep is the batch step itself, so the SIGTERM of a preemption or requeue reaches it
    # and it saves a checkpoint before SLURM's KillWait runs out.
    lines.append("exec " + " ".join(shlex.quote(part) for part in command) + ' --job_index="$SLURM_ARRAY_TASK_ID"'
                 f" --num_jobs={len(sweep_lib.plan(sweep))}")
    return "\n".join(lines) + "\n"


def unfinished_jobs(sweep: ml_collections.ConfigDict) -> list[int]:
    """Indices of the sweep's jobs that have a trial without a result."""
    workdir = os.path.abspath(sweep.workdir)
    return [job.index for job in sweep_lib.plan(sweep)
            if any(sweep_lib.trial_status(workdir, trial) != "done" for trial in job.trials)]


def submit_array(sweep: ml_collections.ConfigDict, command: Sequence[str], *, chdir: str | None = None,
                 sbatch: str = "sbatch") -> Submission | None:
    """Write the batch script under `<workdir>/slurm/` and submit it with `sbatch --parsable`;
    None when every trial is done already."""
    indices = unfinished_jobs(sweep)
    if not indices:
        return None
    executable = shutil.which(sbatch)
    if executable is None:
        raise SubmitError(f"{sbatch} is not on PATH: submit from a SLURM login node (or install SLURM)")
    log_dir = os.path.join(os.path.abspath(sweep.workdir), "slurm")
    os.makedirs(log_dir, exist_ok=True)
    script = os.path.join(log_dir, "array.sbatch")
    with open(script, "w") as handle:
        handle.write(array_script(sweep, indices, command, os.path.abspath(chdir or os.getcwd())))
    result = subprocess.run([executable, "--parsable", script], capture_output=True, text=True)
    if result.returncode != 0:
        reason = (result.stderr.strip() or result.stdout.strip() or f"exit status {result.returncode}").splitlines()[-1]
        raise SubmitError(f"sbatch refused {script}: {reason}")
    job_id = result.stdout.strip().split(";")[0]  # "<id>" or "<id>;<cluster>"
    return Submission(job_id, tuple(indices), script, log_dir)


def _ranges(indices: Sequence[int]) -> str:
    """'0-3,5,7-8' for [0, 1, 2, 3, 5, 7, 8]: SLURM's array syntax."""
    parts, start = [], None
    ordered = sorted(indices)
    for position, index in enumerate(ordered):
        if start is None:
            start = index
        if position + 1 == len(ordered) or ordered[position + 1] != index + 1:
            parts.append(str(start) if start == index else f"{start}-{index}")
            start = None
    return ",".join(parts)
