"""Part 4.1's configs: the Canon sweep (configs/sweeps/part4_canon.py) plans the paper's grid for
every task, the learning rates (and Mano's seeds) of one architecture and shape train stacked in
one job, the architectures differ only in position, RoPE fraction and Canon, and every trial
validates; Capo (configs/bio/capo.py) and Lano (configs/cfg/lano.py) set what Part 4.1 sets; a bad
argument says what is allowed."""
import collections
import os

import pytest

from lmphys import sweep
from lmphys.config import load_config_file
from lmphys.errors import ConfigError
from lmphys.train import run_config
from tests.conftest import REPO

SWEEP = os.path.join(REPO, "configs", "sweeps", "part4_canon.py")
CAPO, LANO = os.path.join(REPO, "configs", "bio", "capo.py"), os.path.join(REPO, "configs", "cfg", "lano.py")
ARCHITECTURE_FIELDS = ("position", "rope_fraction", "canon")


def planned(arg):
    config = load_config_file(SWEEP, arg)
    jobs = sweep.plan(config)
    return config, jobs, [[trial.config(config.base, config.workdir) for trial in job.trials] for job in jobs]


@pytest.mark.parametrize("task, models_per_job", [("depo1", 4), ("depo2", 4), ("brevo1", 4), ("brevo2", 4), ("mano", 8),
                                                  ("cfg3f", 4), ("cfg3j", 4)])
def test_the_paper_grid_stacks_each_cells_learning_rates_in_one_job(task, models_per_job):
    config, jobs, configs = planned(task)
    assert len(jobs) == 5 * 4 and all(len(job) == models_per_job for job in configs)
    cells = collections.Counter()
    for job in configs:
        first = job[0].model
        cells[(first.position, first.rope_fraction, first.canon, first.num_layers, first.width)] += 1
        assert len({member.optim.learning_rate for member in job}) == len(job) // (2 if task == "mano" else 1)
        for member in job:  # one architecture and shape per job
            assert all(member.model[f] == first[f] for f in ARCHITECTURE_FIELDS + ("num_layers", "width", "num_heads"))
            assert member.model.width // member.model.num_heads == 64
    assert set(cells.values()) == {1} and len(cells) == 20
    assert {(layers, width) for *_, layers, width in cells} == {(8, 512), (12, 512), (8, 768), (12, 768)}
    assert {cell[:3] for cell in cells} == {("rope", 1.0, ""), ("rope", 1.0, "ABCD"), ("rope", 0.25, "ABCD"),
                                            ("none", 1.0, ""), ("none", 1.0, "ABCD")}
    first, last = configs[0][0], configs[-1][-1]
    # every cell sees the same data for the same steps
    assert first.task.to_dict() == last.task.to_dict() and first.train.steps == last.train.steps
    run_config.validate(first)
    run_config.validate(last)


def test_the_small_sweep_compares_the_named_architectures_one_model_each():
    config, jobs, configs = planned("mano,small,nope,nope+canon")
    assert [len(job) for job in configs] == [1, 1]
    assert [(job[0].model.position, job[0].model.canon) for job in configs] == [("none", ""), ("none", "ABCD")]
    for job in configs:
        run_config.validate(job[0])
    assert config.workdir == "runs/part4_canon_mano_small"


def test_capo_is_bios_at_100_exposures_on_the_named_column_and_size():
    config = load_config_file(CAPO, "50000,nope+canon,8-6")
    assert (config.task.world, config.task.exposures, config.task.people) == ("bios", 100, 50000)
    assert config.task.renderings == 2**26 // (70 * 50000) == 19  # fresh text as far as the pool holds
    assert (config.model.num_layers, config.model.num_heads, config.model.width) == (8, 6, 384)
    assert (config.model.position, config.model.canon, config.model.norm, config.model.mlp) == ("none", "ABCD",
                                                                                                "rmsnorm", "swiglu")
    run_config.validate(config)
    assert load_config_file(CAPO).task.renderings == 100  # the default 1,000 people: one per exposure


def test_lano_is_the_paper_grammar_run_on_the_named_column_and_shape():
    config = load_config_file(LANO, "cfg3j,rope4+canon,12L768D")
    assert (config.task.grammar, config.task.seq_len, config.task.batch_size) == ("cfg3j", 1536, 96)
    assert (config.model.num_layers, config.model.width, config.model.num_heads) == (12, 768, 12)
    assert (config.model.rope_fraction, config.model.canon) == (0.25, "ABCD")
    assert (config.optim.warmup_steps, config.optim.schedule, config.optim.weight_decay) == (0, "linear", 0.1)
    run_config.validate(config)
    assert load_config_file(LANO).task.seq_len == 512


@pytest.mark.parametrize("path, arg", [(SWEEP, "depo3"), (SWEEP, "depo1,small,alibi"), (SWEEP, "mano,x"),
                                       (SWEEP, "cfg3f,small"), (SWEEP, "cfg3j,100"), (CAPO, "2000000"),
                                       (CAPO, "1000,8x6"), (LANO, "cfg3b"), (LANO, "cfg3f,8L500D")])
def test_a_bad_argument_says_what_is_allowed(path, arg):
    with pytest.raises(ConfigError, match="config argument|model shape"):
        load_config_file(path, arg)
