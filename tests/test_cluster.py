"""Sweeps and multi-process jobs under a real scheduler: the local one-node SLURM cluster of
.ci/slurm.sh (pytest -m cluster; CI starts it, elsewhere the tests skip saying why).

A sweep submitted with `scripts/sweep.py --submit=slurm` runs as an array job, one task per
stacked job, and ends with the results.md of the same sweep run here; a task that SLURM requeues
while it trains saves a checkpoint on SIGTERM and resumes from it; a failing trial fails its own
task alone. `srun -n 2` trains one model in two JAX processes, each with half the batch, to the
parameters of one process with the whole batch."""
import os
import shutil
import subprocess
import time

import jax
import ml_collections
import numpy as np
import pytest

from lmphys import report, sweep
from lmphys.config import load_config_file
from lmphys.train import loop, metrics, runs
from tests import cluster

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("slurm_cluster")]


def results_md(workdir) -> str:
    rows = report.collect(str(workdir))
    assert len(rows) == 6, [(row["trial"], row["status"]) for row in rows]
    report.write_tables(rows, str(workdir), report.columns(rows))
    return open(os.path.join(workdir, "results.md")).read()


def tiny_sweep(kind: str, workdir) -> ml_collections.ConfigDict:
    config = load_config_file(cluster.TINY, kind)
    config.workdir = str(workdir)
    return config


@pytest.fixture(scope="module")
def local_table(tmp_path_factory):
    """results.md of the tiny sweep run here, in this process."""
    workdir = tmp_path_factory.mktemp("local")
    status = sweep.run_sweep(tiny_sweep("sweep", workdir), log=lambda line: None)
    assert list(status.values()).count("done") == 4 and list(status.values()).count("failed") == 2
    return results_md(workdir)


@pytest.fixture(scope="module")
def array_job(tmp_path_factory):
    """The tiny sweep submitted with `scripts/sweep.py --submit=slurm` (4 array tasks: two jobs of
    two stacked models, two jobs whose trial fails), task 1 requeued as soon as it has written a
    checkpoint: (workdir, job id, final task states)."""
    workdir = tmp_path_factory.mktemp("array") / "sweep"
    command = cluster.script("sweep.py") + [f"--config={cluster.TINY}:sweep", f"--config.workdir={workdir}",
                                            "--submit=slurm"]
    submitted = subprocess.run(command, cwd=cluster.REPO, env=cluster.process_env(), capture_output=True, text=True,
                               timeout=120)
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    first = submitted.stdout.splitlines()[0]
    assert first.startswith("submitted SLURM array job ") and "4 tasks, one per stacked job" in first, submitted.stdout
    assert "squeue -j " in submitted.stdout and "--status" in submitted.stdout
    job_id = first.split()[4].rstrip(":")

    job = sweep.plan(tiny_sweep("sweep", workdir))[1]
    checkpoints = workdir / "trials" / job.trials[0].trial_id / "checkpoints"
    deadline = time.monotonic() + 240
    while not (checkpoints.is_dir() and any(name.isdigit() for name in os.listdir(checkpoints))):
        assert time.monotonic() < deadline, _logs(workdir)
        time.sleep(0.005)
    # What a preemption does: SLURM sends the task SIGTERM, waits up to KillWait, and queues it again.
    subprocess.run(["scontrol", "requeue", f"{job_id}_1"], check=True)
    while cluster.job_states(job_id).get("1") != "PENDING":
        assert time.monotonic() < deadline, cluster.job_states(job_id)
        time.sleep(0.1)
    subprocess.run(["scontrol", "update", f"jobid={job_id}_1", "StartTime=now"], check=True)  # skip requeue's delay
    return workdir, job_id, cluster.wait_for_job(job_id)


def test_the_array_job_writes_one_task_per_stacked_job_with_the_configured_resources(array_job):
    workdir, job_id, _ = array_job
    script = (workdir / "slurm" / "array.sbatch").read_text()
    assert "#SBATCH --array=0-3" in script and "#SBATCH --cpus-per-task=1" in script
    assert "#SBATCH --time=00:10:00" in script and "#SBATCH --requeue" in script
    assert ' --job_index="$SLURM_ARRAY_TASK_ID" --num_jobs=4' in script
    assert sorted(cluster.job_states(job_id)) == ["0", "1", "2", "3"]


def test_a_sweep_run_as_an_array_job_ends_with_the_table_of_the_same_sweep_run_here(array_job, local_table):
    workdir, _, states = array_job
    assert states["0"] == states["1"] == "COMPLETED", _logs(workdir)
    assert results_md(workdir) == local_table
    status = subprocess.run(cluster.script("sweep.py") + [f"--config={cluster.TINY}:sweep", f"--config.workdir={workdir}",
                                                          "--status"], capture_output=True, text=True, timeout=120,
                            env=cluster.process_env())
    assert status.stdout.splitlines()[0].endswith(": 4 done, 2 failed"), status.stdout


def test_a_requeued_task_saved_a_checkpoint_on_sigterm_and_resumed_from_it(array_job):
    workdir, job_id, _ = array_job
    log = (workdir / "slurm" / f"{job_id}_1.out").read_text()
    assert "SIGTERM received: saving a checkpoint at step" in log, log[-3000:]
    assert "resumed from step" in log.split("SIGTERM received")[1], log[-3000:]


def test_a_failing_trial_fails_its_own_array_task_and_the_others_finish(array_job):
    workdir, _, states = array_job
    assert states == {"0": "COMPLETED", "1": "COMPLETED", "2": "FAILED", "3": "FAILED"}, _logs(workdir)
    error = (workdir / "trials" / "num_heads=3,seed=0" / sweep.ERROR_FILE).read_text()
    assert "model.num_heads = 3 is invalid" in error
    assert (workdir / "trials" / "num_layers=2,seed=1" / sweep.RESULT_FILE).exists()


def test_srun_two_tasks_train_one_model_to_the_parameters_of_one_process(tmp_path):
    """Two SLURM tasks, one CPU device each, join one JAX job (parallel.distributed = auto reads
    SLURM's environment); each feeds half the batch. One process with the same two devices runs the
    same arithmetic (bitwise equal); one device alone sums the gradient in another order (float
    tolerance). Its checkpoint restores in one process, which continues it to the same end."""
    workdir = tmp_path / "srun"
    command = ["srun", "--ntasks=2", "--cpus-per-task=1", "--kill-on-bad-exit=1"] + cluster.script("train.py") + [
        f"--config={cluster.TINY}", f"--config.workdir={workdir}", "--config.parallel.data=-1",
        "--config.train.checkpoint_every=4"]
    done = subprocess.run(command, cwd=cluster.REPO, env=cluster.process_env(devices=1), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "joined a 2-host job as process 0" in done.stdout and "on 2 x cpu (models 1, data 2, fsdp 1)" in done.stdout
    two = runs.load_trained(str(workdir))
    assert two.step == 8

    same_devices = _one_process(tmp_path / "two_devices", data=2)
    one_device = _one_process(tmp_path / "one_device", data=1)
    for a, b, c in zip(jax.tree.leaves(two.params), jax.tree.leaves(same_devices), jax.tree.leaves(one_device)):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-6)
    steps = [record["step"] for record in metrics.read_metrics(str(workdir)) if record["split"] == "train"]
    assert steps == list(range(1, 9)), "metrics are written once, by process 0"

    # The two-process checkpoint of step 4 restores in one process, which ends where they ended.
    resumed = tmp_path / "resumed"
    shutil.copytree(workdir, resumed)
    shutil.rmtree(resumed / "checkpoints" / "8")
    config = load_config_file(cluster.TINY)
    config.workdir, config.parallel.data, config.train.checkpoint_every = str(resumed), 2, 4
    lines = []
    loop.run(config, log=lines.append)
    assert "resumed from step 4" in "\n".join(lines)
    for a, b in zip(jax.tree.leaves(two.params), jax.tree.leaves(runs.load_trained(str(resumed)).params)):
        np.testing.assert_array_equal(a, b)


def _one_process(workdir, data: int):
    config = load_config_file(cluster.TINY)
    config.workdir, config.parallel.data = str(workdir), data
    return loop.run(config, log=lambda line: None).state["params"]


def _logs(workdir) -> str:
    folder = os.path.join(workdir, "slurm")
    names = sorted(name for name in os.listdir(folder) if name.endswith(".out")) if os.path.isdir(folder) else []
    return "\n".join(f"--- {name}\n" + open(os.path.join(folder, name)).read()[-2500:] for name in names)
