"""Sweeps expand grids into stable trials, survive a failing trial, skip finished ones on restart,
and report one row per trial."""
import json
import os
import signal
import subprocess
import sys
import threading
import time

import ml_collections
import pytest

from lmphys import config as config_lib, report, sweep
from lmphys.config import load_config_file
from lmphys.errors import ConfigError
from lmphys.train import checkpoint, metrics
from tests.conftest import REPO, tiny_config


def make_sweep(workdir, grid):
    config = ml_collections.ConfigDict()
    config.workdir = str(workdir)
    config.base = tiny_config("unused", steps=3)
    config.grid = ml_collections.ConfigDict(grid)
    config.analyses = ()
    return config


def test_grid_expands_to_every_combination_with_stable_ids():
    trials = sweep.expand({"model": {"num_layers": [1, 2], "position": ["rope", "none"]}, "seed": [0]})
    ids = [trial.trial_id for trial in trials]
    assert ids == [
        "num_layers=1,position=rope,seed=0", "num_layers=1,position=none,seed=0",
        "num_layers=2,position=rope,seed=0", "num_layers=2,position=none,seed=0",
    ]
    config = trials[3].config(tiny_config("unused"), "/sweeps/x")
    assert config.model.num_layers == 2 and config.model.position == "none"
    assert config.workdir == os.path.join("/sweeps/x", "trials", ids[3])
    with pytest.raises(ConfigError, match="model.depth"):
        sweep.expand({"model": {"depth": [1]}})[0].config(tiny_config("unused"), "/x")
    with pytest.raises(ConfigError, match="non-empty list"):
        sweep.expand({"seed": 3})


def test_cases_set_fields_jointly_and_combine_with_the_grid():
    # Model shapes are (num_layers, num_heads, width) triples, not a product of the three.
    cases = [{"model": {"num_layers": 1, "num_heads": 4, "width": 64}},
             {"model": {"num_layers": 2, "num_heads": 2, "width": 32}}]
    trials = sweep.expand({"seed": [0, 1]}, cases)
    assert [trial.trial_id for trial in trials] == [
        "num_layers=1,num_heads=4,width=64,seed=0", "num_layers=1,num_heads=4,width=64,seed=1",
        "num_layers=2,num_heads=2,width=32,seed=0", "num_layers=2,num_heads=2,width=32,seed=1",
    ]
    config = trials[2].config(tiny_config("unused"), "/x")
    assert (config.model.num_layers, config.model.num_heads, config.model.width, config.seed) == (2, 2, 32, 0)
    # Cases may set different fields; a case alone (empty grid) is one trial.
    assert [t.trial_id for t in sweep.expand({}, [{"seed": 3}, {"seed": 4, "model": {"position": "none"}}])] == [
        "seed=3", "seed=4,position=none"]
    assert sweep.expand({"seed": [0]}) == sweep.expand({"seed": [0]}, ())  # no cases: the grid alone
    with pytest.raises(ConfigError, match="model.num_layers, which the grid sweeps too"):
        sweep.expand({"model": {"num_layers": [1, 2]}}, cases)
    with pytest.raises(ConfigError, match="appear more than once"):
        sweep.expand({"seed": [0]}, [cases[0], cases[0]])
    with pytest.raises(ConfigError, match=r"cases\[1\] = \{\} is invalid"):
        sweep.expand({"seed": [0]}, [cases[0], {}])
    with pytest.raises(ConfigError, match="list of dicts"):
        sweep.expand({"seed": [0]}, cases[0])


def test_plan_groups_the_trials_of_each_case(tmp_path):
    config = make_sweep(tmp_path / "sweep", {"seed": [0, 1]})
    config.cases = [{"model": {"num_layers": 1, "width": 32}}, {"model": {"num_layers": 2, "width": 16}}]
    groups = [[trial.trial_id for trial in job.trials] for job in sweep.plan(config)]
    assert groups == [["num_layers=1,width=32,seed=0", "num_layers=1,width=32,seed=1"],
                      ["num_layers=2,width=16,seed=0", "num_layers=2,width=16,seed=1"]]


def test_a_failing_trial_is_recorded_and_the_rest_finish_then_restart_skips_them(tmp_path):
    # num_heads=3 does not divide the width: that trial fails validation, the other one trains.
    config = make_sweep(tmp_path / "sweep", {"model": {"num_heads": [2, 3]}})
    lines = []
    status = sweep.run_sweep(config, log=lines.append)
    assert status == {"num_heads=2": "done", "num_heads=3": "failed"}
    error = (tmp_path / "sweep" / "trials" / "num_heads=3" / sweep.ERROR_FILE).read_text()
    assert "model.num_heads = 3 is invalid" in error

    lines.clear()
    status = sweep.run_sweep(config, log=lines.append)
    assert status == {"num_heads=2": "done", "num_heads=3": "failed"}
    assert not any("num_heads=2 started" in line for line in lines), "a finished trial ran again"
    assert any("num_heads=3 started" in line for line in lines), "a failed trial is retried on restart"

    rows = report.collect(str(tmp_path / "sweep"))
    assert [(row["trial"], row["status"]) for row in rows] == [("num_heads=2", "done"), ("num_heads=3", "failed")]
    assert 0.0 <= rows[0]["eval.gen_accuracy"] <= 1.0 and rows[0]["model.num_heads"] == 2
    names = report.columns(rows)
    table = report.markdown_table(rows, names)
    assert table.count("\n") == 3 and "eval.gen_accuracy" in names and "| gen_accuracy |" in table
    written = report.write_tables(rows, str(tmp_path / "sweep"), names)
    written += tuple(report.plot(rows, str(tmp_path / "sweep"), {"accuracy": ["eval.gen_accuracy"]}))
    assert all(os.path.getsize(path) > 0 for path in written)


def test_trials_that_share_shapes_are_grouped_into_stacked_jobs(tmp_path):
    config = make_sweep(tmp_path / "sweep", {"model": {"num_layers": [1, 2], "num_heads": [2, 3]}, "seed": [0, 1, 2]})
    config.max_models_per_job = 2
    jobs = sweep.plan(config)
    groups = [[trial.trial_id for trial in job.trials] for job in jobs]
    assert groups[:2] == [
        ["num_heads=2,num_layers=1,seed=0", "num_heads=2,num_layers=1,seed=1"],
        ["num_heads=2,num_layers=1,seed=2"],
    ]
    # num_heads=3 does not divide the width: each such trial is a job of its own, to fail alone
    assert ["num_heads=3,num_layers=1,seed=0"] in groups and len(groups) == 10
    assert sorted(t for group in groups for t in group) == sorted(t.trial_id for t in sweep.expand(config.grid))
    assert [job.index for job in jobs] == list(range(10))


SWEEP_FILES = sorted(name for name in os.listdir(os.path.join(REPO, "configs", "sweeps")) if name.endswith(".py"))


def _leaves(grid, prefix=""):
    for key, value in grid.items():
        if isinstance(value, ml_collections.ConfigDict):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


@pytest.mark.parametrize("name", SWEEP_FILES)
def test_every_sweep_grid_field_can_be_narrowed_from_the_command_line(name):
    """Each grid field is a tuple, which absl's --config.grid.<field>="(<value>,)" can override
    (ml_collections refuses to put a tuple where the config holds a list)."""
    from absl import flags
    from ml_collections import config_flags

    path = os.path.join(REPO, "configs", "sweeps", name)
    leaves = list(_leaves(load_config_file(path).grid))
    assert leaves
    for field, values in leaves:
        assert isinstance(values, tuple), f"{name}: grid.{field} is a {type(values).__name__}"
        argv = ["sweep.py", f"--config={path}", f"--config.grid.{field}=({values[-1]!r},)"]
        flag_values = flags.FlagValues()  # scripts/sweep.py's flag, defined apart from the global flags
        config_flags.DEFINE_config_file("config", None, "", flag_values=flag_values, lock_config=False, sys_argv=argv)
        flag_values(argv)
        narrowed = sweep.expand(flag_values.config.grid)
        assert narrowed and all(dict(trial.overrides)[f"{field}"] == values[-1] for trial in narrowed)


@pytest.mark.parametrize("name", ["part1_positions.py", "part1_robustness.py"])
def test_a_part1_sweeps_second_seed_stacks_with_the_first_and_changes_only_the_seed(name):
    """Part 1's two-seed tables: --config.grid.seed="(0,1)" trains the two seeds of each setting as
    one stacked job, and a seed-1 trial is its seed-0 twin but for the seed (model init, data
    stream, sampling) and its workdir; the seed-0 trial is the sweep's single-seed trial."""
    single = load_config_file(os.path.join(REPO, "configs", "sweeps", name))
    both = load_config_file(os.path.join(REPO, "configs", "sweeps", name))
    both.grid.seed = (0, 1)
    jobs, single_jobs = sweep.plan(both), sweep.plan(single)
    assert len(jobs) == len(single_jobs) and all(len(job.trials) == 2 for job in jobs)
    single_ids = {trial.trial_id for job in single_jobs for trial in job.trials}
    for job in jobs:
        first, second = (config_lib.flat_fields(trial.config(both.base, both.workdir)) for trial in job.trials)
        assert job.trials[0].trial_id in single_ids and json.loads(first["seed"]) == 0
        assert {field for field in first if first[field] != second.get(field)} == {"seed", "workdir"}


DEPTH_WIDTH = os.path.join(REPO, "configs", "sweeps", "depth_width.py")


def _table(workdir):
    rows = report.collect(str(workdir))
    return [{k: v for k, v in row.items() if not k.endswith("seconds")} for row in rows]


@pytest.mark.slow
def test_a_killed_sweep_restarts_and_ends_with_the_table_of_an_uninterrupted_one(tmp_path):
    """The acceptance run at tiny scale: 2 depths x 2 widths x 2 seeds in 4 stacked jobs, killed
    with SIGKILL in the middle of a job, then restarted with the same command."""
    killed_dir = tmp_path / "killed"
    command = [sys.executable, os.path.join(REPO, "scripts", "sweep.py"), f"--config={DEPTH_WIDTH}:tiny",
               f"--config.workdir={killed_dir}"]
    log_path = tmp_path / "killed.log"
    with open(log_path, "w") as log_file:
        process = subprocess.Popen(command, cwd=REPO, stdout=log_file, stderr=subprocess.STDOUT)
        plan = sweep.plan(_tiny(killed_dir))
        # Kill it (no chance to save) as soon as some trial has a finished checkpoint but no result.
        while process.poll() is None and not _interrupted(killed_dir, plan):
            time.sleep(0.005)
        process.kill()
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, log_path.read_text()[-3000:]
    states = {t.trial_id: sweep.trial_status(str(killed_dir), t) for job in plan for t in job.trials}
    assert "interrupted" in states.values() and "done" not in {states[t.trial_id] for t in plan[-1].trials}
    assert "interrupted" in "\n".join(sweep.status_lines(_tiny(killed_dir)))

    restarted = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert restarted.returncode == 0, restarted.stdout[-3000:] + restarted.stderr[-3000:]
    assert "resumed from step" in restarted.stdout or "resuming all 2 stacked models from step 0" in restarted.stdout
    for job in plan:  # finished jobs are not run again
        finished = all(states[t.trial_id] == "done" for t in job.trials)
        assert (f"[job {job.index}]" in restarted.stdout) != finished

    # Reference: the same sweep uninterrupted, as two array tasks, each running two jobs at once
    # on halves of the 8 devices.
    reference = _tiny(tmp_path / "reference")
    first_half = sweep.run_sweep(reference, job_index=0, num_jobs=2, parallel_jobs=2, log=lambda line: None)
    assert set(first_half) == {t.trial_id for job in sweep.plan(reference) if job.index % 2 == 0 for t in job.trials}
    sweep.run_sweep(reference, job_index=1, num_jobs=2, parallel_jobs=2, log=lambda line: None)

    killed_table, reference_table = _table(killed_dir), _table(tmp_path / "reference")
    assert len(killed_table) == 8 and all(row["status"] == "done" for row in killed_table)
    assert killed_table == reference_table


def _interrupted(workdir, plan) -> bool:
    return any(sweep.trial_status(str(workdir), t) == "interrupted" for job in plan for t in job.trials)


def _tiny(workdir):
    config = load_config_file(DEPTH_WIDTH, "tiny")
    config.workdir = str(workdir)
    return config


def test_a_sigterm_that_the_kernel_hands_to_a_job_thread_still_stops_the_sweep(tmp_path):
    """The kernel may deliver a process's SIGTERM to any of its threads, and Python runs the
    handler in the main thread only: here the signal goes to the job's own thread, so the sweep
    stops only if its main thread keeps waking while the job trains."""
    config = make_sweep(tmp_path / "sweep", {"seed": [0]})
    config.base.train.steps, config.base.train.checkpoint_every = 2000, 10_000
    trial_dir = tmp_path / "sweep" / "trials" / "seed=0"
    sent = {}

    def log(line):
        if "step 3/" in line and not sent:
            sent["thread"] = threading.current_thread() is not threading.main_thread()
            signal.pthread_kill(threading.get_ident(), signal.SIGTERM)

    status = sweep.run_sweep(config, log=log)
    assert sent == {"thread": True}, "the signal was not sent from the job's thread"
    assert status == {"seed=0": "stopped"}
    assert checkpoint.finished_steps(str(trial_dir))[-1] < 2000, "the sweep trained on to the end"


def test_a_trial_that_diverges_is_failed_at_once_and_does_not_reset_its_stacked_partner(tmp_path):
    """One model of a stacked job diverges before the first checkpoint; the sweep is stopped
    later. The rerun resumes the healthy model from its own checkpoint (not step 0) and retries
    the diverged one in a job of its own."""
    config = make_sweep(tmp_path / "sweep", {"optim": {"learning_rate": [1e-3, 1e30]}})
    config.base.train.steps, config.base.train.checkpoint_every = 8, 4
    config.base.optim.warmup_steps = 0  # the first update throws the second model's weights to ~1e30
    assert [len(job.trials) for job in sweep.plan(config)] == [2]
    healthy, diverged = (tmp_path / "sweep" / "trials" / name for name in ("learning_rate=0.001", "learning_rate=1e+30"))
    seen = {}

    def log(line):
        if "step 4/8" in line:  # logged before step 4's checkpoint is written
            seen["recorded"] = (diverged / sweep.ERROR_FILE).exists()
            seen["healthy checkpoints"] = checkpoint.finished_steps(str(healthy))
        if "step 6/8" in line:
            os.kill(os.getpid(), signal.SIGTERM)

    status = sweep.run_sweep(config, log=log)
    assert seen == {"recorded": True, "healthy checkpoints": []}, "the divergence was not recorded when it happened"
    assert status == {"learning_rate=0.001": "stopped", "learning_rate=1e+30": "failed"}
    stopped_at = checkpoint.finished_steps(str(healthy))[-1]  # the signal reaches the job's thread a step or so later
    assert 4 < stopped_at < 8 and checkpoint.finished_steps(str(diverged)) == []

    lines = []
    status = sweep.run_sweep(config, log=lines.append)
    assert status == {"learning_rate=0.001": "done", "learning_rate=1e+30": "failed"}
    text = "\n".join(lines)
    assert f"resumed from step {stopped_at}" in text and "from step 0" not in text
    assert "stacked models" not in text.split("[job 0]")[1], "the diverged trial was stacked again"
    assert text.count("failed: the training loss became") == 1
    steps = [record["step"] for record in metrics.read_metrics(str(healthy)) if record["split"] == "train"]
    assert steps == list(range(1, 9))
