"""Sweeps expand grids into stable trials, survive a failing trial, skip finished ones on restart,
and report one row per trial."""
import os

import ml_collections
import pytest

from lmphys import report, sweep
from lmphys.errors import ConfigError
from tests.conftest import tiny_config


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
    assert status["num_heads=2"] == "done"
    assert not any("[1/2] num_heads=2" in line for line in lines), "a finished trial ran again"
    assert any("[2/2] num_heads=3" in line for line in lines), "a failed trial is retried on restart"

    rows = report.collect(str(tmp_path / "sweep"))
    assert [(row["trial"], row["status"]) for row in rows] == [("num_heads=2", "done"), ("num_heads=3", "failed")]
    assert 0.0 <= rows[0]["eval.gen_accuracy"] <= 1.0 and rows[0]["model.num_heads"] == 2
    names = report.columns(rows)
    table = report.markdown_table(rows, names)
    assert table.count("\n") == 3 and "eval.gen_accuracy" in names and "| gen_accuracy |" in table
    written = report.write_tables(rows, str(tmp_path / "sweep"), names)
    written += tuple(report.plot(rows, str(tmp_path / "sweep"), {"accuracy": ["eval.gen_accuracy"]}))
    assert all(os.path.getsize(path) > 0 for path in written)
