"""Jobs of two JAX processes started by hand (coordinator address, process count and id; no
scheduler), on the CPU over loopback with gloo collectives (pytest -m cluster).

Two processes of one CPU device each train one model, each process making only its half of every
host-made batch (iGSM, with a data worker process per host), from a checkpoint one process wrote;
they end with the parameters of one process with both devices and the whole batch, bitwise. Two
stacked models with the `models` axis split over the processes (one model per host) end as two
separate runs do, to float tolerance (vmapped and lone steps round differently)."""
import shutil

import jax
import numpy as np
import pytest

from lmphys import sweep
from lmphys.config import load_config_file
from lmphys.train import loop, metrics, runs
from tests import cluster

pytestmark = pytest.mark.cluster


def _config(kind: str, workdir, **fields):
    config = load_config_file(cluster.TINY, kind)
    config.workdir = str(workdir)
    for field, value in fields.items():
        node = config
        *parents, name = field.split("__")
        for parent in parents:
            node = node[parent]
        node[name] = value
    return config


def test_two_processes_resume_a_one_process_checkpoint_and_end_as_one_process_does(tmp_path):
    # One process, two devices, the whole run: the reference.
    whole = loop.run(_config("igsm", tmp_path / "whole", parallel__data=2), log=lambda line: None)
    # One process writes the checkpoint of step 3; two processes go on from it to step 6.
    workdir = tmp_path / "two"
    loop.run_group([_config("igsm", workdir, parallel__data=2)], stop_at_step=3, log=lambda line: None)
    outputs = cluster.run_processes(cluster.script("train.py") + [f"--config={cluster.TINY}:igsm",
                                                                  f"--config.workdir={workdir}",
                                                                  "--config.parallel.data=-1"], 2, str(tmp_path))
    assert "resumed from step 3" in outputs[0] and "on 2 x cpu (models 1, data 2, fsdp 1)" in outputs[0], outputs[0]
    assert "step 6/6" not in outputs[1], "process 1 prints nothing of the run: process 0 speaks for the job"
    two = runs.load_trained(str(workdir))
    assert two.step == 6
    for a, b in zip(jax.tree.leaves(two.params), jax.tree.leaves(whole.state["params"])):
        np.testing.assert_array_equal(a, b)
    train_steps = [record["step"] for record in metrics.read_metrics(str(workdir)) if record["split"] == "train"]
    assert train_steps == list(range(1, 7)), "each step's metrics are written once, by process 0"


def test_stacked_models_split_over_two_processes_equal_separate_runs(tmp_path):
    workdir = tmp_path / "sweep"
    command = cluster.script("sweep.py") + [
        f"--config={cluster.TINY}:sweep", f"--config.workdir={workdir}", "--config.base.train.steps=8",
        "--config.base.parallel.models=2", "--config.base.parallel.data=1", "--job_index=0", "--num_jobs=4"]
    outputs = cluster.run_processes(command, 2, str(tmp_path), parallel_field="config.base.parallel")
    assert "2 stacked models" in outputs[0] and "(models 2, data 1, fsdp 1)" in outputs[0], outputs[0]
    config = _config("sweep", workdir, base__train__steps=8)
    job = sweep.plan(config)[0]
    assert len(job.trials) == 2
    for trial in job.trials:
        stacked = runs.load_trained(trial.config(config.base, str(workdir)).workdir)
        alone = trial.config(config.base, str(tmp_path / "alone"))
        reference = loop.run(alone, log=lambda line: None).state["params"]
        for a, b in zip(jax.tree.leaves(stacked.params), jax.tree.leaves(reference)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
        assert (workdir / "trials" / trial.trial_id / sweep.RESULT_FILE).exists()
    shutil.rmtree(tmp_path / "alone")
