"""The batch script of a sweep submitted to SLURM (lmphys/cluster.py), without a scheduler: one
array task per unfinished stacked job, the resources of the sweep's `slurm` section, the sweep's own
command run with exec; bad fields and a missing sbatch are one-sentence errors. (Submitting for
real is tests/test_cluster.py, under pytest -m cluster.)"""
import os

import ml_collections
import pytest

from lmphys import cluster, sweep
from lmphys.errors import ConfigError
from tests.conftest import tiny_config


def _sweep(workdir, **slurm):
    config = ml_collections.ConfigDict()
    config.workdir = str(workdir)
    config.base = tiny_config("unused", steps=3)
    config.grid = ml_collections.ConfigDict({"model": {"num_layers": [1, 2, 3]}, "seed": [0, 1]})
    config.analyses = ()
    if slurm:
        config.slurm = ml_collections.ConfigDict(slurm)
    return config


def test_the_array_script_has_a_task_per_unfinished_job_and_the_configured_resources(tmp_path):
    config = _sweep(tmp_path / "s", gpus_per_task=2, cpus_per_task=8, mem="64G", time="04:00:00",
                    partition="gpu", max_running=2, sbatch=["--account=lab", "#SBATCH --qos=high"],
                    setup=["module load cuda"])
    assert [job.index for job in sweep.plan(config)] == [0, 1, 2]
    done = sweep.plan(config)[1].trials  # job 1 finished: it gets no task
    for trial in done:
        os.makedirs(tmp_path / "s" / "trials" / trial.trial_id)
        open(tmp_path / "s" / "trials" / trial.trial_id / sweep.RESULT_FILE, "w").close()
    assert cluster.unfinished_jobs(config) == [0, 2]
    script = cluster.array_script(config, cluster.unfinished_jobs(config), ["/py", "sweep.py", "--config=a b.py"], "/here")
    lines = script.splitlines()
    assert lines[0] == "#!/bin/bash"
    for option in ("--array=0,2%2", "--gpus-per-task=2", "--cpus-per-task=8", "--mem=64G", "--time=04:00:00",
                   "--partition=gpu", "--account=lab", "--qos=high", "--requeue", "--chdir=/here",
                   f"--output={tmp_path / 's' / 'slurm' / '%A_%a.out'}"):
        assert f"#SBATCH {option}" in lines, option
    assert lines[-2] == "module load cuda"
    assert lines[-1] == "exec /py sweep.py '--config=a b.py' --job_index=\"$SLURM_ARRAY_TASK_ID\" --num_jobs=3"
    plain = cluster.array_script(_sweep(tmp_path / "t"), [0, 1, 2, 4, 5], ["x"], "/here")
    assert "#SBATCH --array=0-2,4-5" in plain and "--gpus-per-task" not in plain and "--time" not in plain


def test_bad_slurm_fields_and_a_missing_sbatch_are_one_sentence_errors(tmp_path):
    with pytest.raises(ConfigError, match="slurm.gpus is not a field"):
        cluster.slurm_settings(_sweep(tmp_path, gpus=1))
    with pytest.raises(ConfigError, match="slurm.cpus_per_task = -1 is invalid"):
        cluster.slurm_settings(_sweep(tmp_path, cpus_per_task=-1))
    with pytest.raises(ConfigError, match="slurm.time = '4 hours' is invalid"):
        cluster.slurm_settings(_sweep(tmp_path, time="4 hours"))
    with pytest.raises(ConfigError, match="slurm.setup = 'module load cuda' is invalid"):
        cluster.slurm_settings(_sweep(tmp_path, setup="module load cuda"))
    with pytest.raises(cluster.SubmitError, match="no-such-sbatch is not on PATH"):
        cluster.submit_array(_sweep(tmp_path), ["x"], sbatch="no-such-sbatch")
