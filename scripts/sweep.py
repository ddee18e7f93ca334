"""Run a sweep: `python scripts/sweep.py --config=configs/sweeps/depth_width.py`.

Trials that share shapes train stacked in one job; each trial writes <sweep workdir>/trials/<id>/
and its result.json. Rerunning the same command skips finished trials and resumes interrupted ones.

    --status                 print each trial's state from the files and exit (run it anywhere)
    --estimate               validate every trial and print its size and estimated H100 hours
                             (training steps at the PyTorch peer's H100 rate, lmphys/cost.py); exit
                             1 if a trial is invalid
    --parallel_jobs=N        N jobs at once, each on 1/N of this host's devices
    --submit=slurm           submit the sweep as a SLURM array job, one task per unfinished stacked
                             job (resources from the config's `slurm` section, lmphys/cluster.py),
                             print its id and how to watch it, and exit
    --job_index=i --num_jobs=n   run jobs j with j mod n == i (default: from a SLURM job array)

Then: scripts/report.py --sweep=DIR.

Exit status: 0 every trial of this share is done; 1 some trials failed (their error.txt says why;
rerunning retries them); 75 the sweep was stopped (SIGTERM, Ctrl-C) or some trials are busy in
another process, so rerun the same command to go on; 2 a user mistake; 74 a write failed (disk
full, no permission). Every error is one line, `error: <sentence>`.
"""
import os
import sys

from absl import app, flags
from ml_collections import config_flags

from lmphys import cli, cluster, cost, parallel, sweep
from lmphys.errors import EXIT_FAILED, EXIT_STOPPED, ConfigError

_CONFIG = config_flags.DEFINE_config_file("config", None, "Sweep config file.", lock_config=False)
_STATUS = flags.DEFINE_bool("status", False, "Print the state of every trial and exit.")
_ESTIMATE = flags.DEFINE_bool("estimate", False, "Validate every trial and print its size and estimated H100 hours; "
                              "run nothing (lmphys/cost.py says how it is estimated).")
_PARALLEL_JOBS = flags.DEFINE_integer("parallel_jobs", 1, "Jobs to run at once on slices of the local devices.",
                                      lower_bound=1)
_SUBMIT = flags.DEFINE_enum("submit", None, ["slurm"], "Submit the sweep to a scheduler instead of running it here.")
_JOB_INDEX = flags.DEFINE_integer("job_index", None, "This array task's index (default: SLURM_ARRAY_TASK_ID).",
                                  lower_bound=0)
_NUM_JOBS = flags.DEFINE_integer("num_jobs", None, "Array tasks in all (default: SLURM_ARRAY_TASK_COUNT).",
                                 lower_bound=1)


def _slurm(name: str, default: int) -> int:
    text = os.environ.get(name, str(default))
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"{name} = {text!r} is invalid: it must be an integer (unset it outside SLURM)") from None


def _array_task() -> tuple[int, int]:
    """(index, count) of this process among the sweep's array tasks: flags, else SLURM, else (0, 1)."""
    index = _JOB_INDEX.value
    if index is None:
        index = _slurm("SLURM_ARRAY_TASK_ID", 0) - _slurm("SLURM_ARRAY_TASK_MIN", 0)
    count = _NUM_JOBS.value if _NUM_JOBS.value is not None else _slurm("SLURM_ARRAY_TASK_COUNT", 1)
    return index, count


def _submit() -> None:
    """Submit this command line (less --submit) as the sweep's array job and say how to follow it."""
    own = ("--submit", "--job_index", "--num_jobs")
    flags_given = [arg for arg in sys.argv[1:] if not arg.startswith(own)]
    command = [sys.executable, os.path.abspath(__file__), *flags_given]
    submission = cluster.submit_array(_CONFIG.value, command)
    if submission is None:
        print(f"every trial of {os.path.abspath(_CONFIG.value.workdir)} is done: nothing to submit")
        return
    config_flags_given = [arg for arg in flags_given if arg.startswith("--config")]
    status = " ".join(["python", os.path.relpath(__file__), *config_flags_given, "--status"])
    print("\n".join(submission.lines(status)))


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if _CONFIG.value is None:
        raise app.UsageError("--config=configs/sweeps/<name>.py is required")
    sweep.check_sweep_config(_CONFIG.value)
    if _STATUS.value:
        print("\n".join(sweep.status_lines(_CONFIG.value)))
        return 0
    if _ESTIMATE.value:
        costs = [cost.trial_cost(trial.trial_id, trial.config(_CONFIG.value.base, _CONFIG.value.workdir))
                 for job in sweep.plan(_CONFIG.value) for trial in job.trials]
        print("\n".join(cost.lines(costs)))
        return EXIT_FAILED if any(item.error for item in costs) else 0
    if _SUBMIT.value:
        _submit()
        return 0
    parallel.initialize_distributed(_CONFIG.value.base.parallel)
    job_index, num_jobs = _array_task()
    status = sweep.run_sweep(_CONFIG.value, job_index=job_index, num_jobs=num_jobs, parallel_jobs=_PARALLEL_JOBS.value)
    if any(value in ("stopped", "busy") for value in status.values()):
        return EXIT_STOPPED
    return 0 if all(value == "done" for value in status.values()) else EXIT_FAILED


if __name__ == "__main__":
    cli.run(main, config_flag="config")
