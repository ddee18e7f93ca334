"""Reports over a hand-written sweep directory: means and stds over seeds, the mean table, the
metric-vs-size plot and the report script, checked against numbers derived from the fake results."""
import itertools
import json
import math
import os
import subprocess
import sys

import matplotlib.axes
import pytest

from lmphys import report
from tests.conftest import REPO

SEED_STEP = 0.02  # gen_accuracy grows by this per seed, so the two-seed std is SEED_STEP / sqrt(2)
TWO_SEED_STD = SEED_STEP / math.sqrt(2)


def accuracy(num_layers, width, position, seed):
    return 0.5 + 0.1 * num_layers + 0.1 * (width == 64) + 0.1 * (position == "rope") + SEED_STEP * seed


def write_trial(sweep_dir, overrides):
    """One finished trial as lmphys.sweep writes it: result.json plus a short metrics.jsonl."""
    trial_id = ",".join(f"{field.split('.')[-1]}={value}" for field, value in overrides.items())
    trial_dir = sweep_dir / "trials" / trial_id
    trial_dir.mkdir(parents=True)
    seed = overrides.get("seed", 0)
    gen_accuracy = accuracy(
        overrides.get("model.num_layers", 1), overrides.get("model.width", 32), overrides.get("model.position"), seed
    )
    result = {
        "trial_id": trial_id,
        "overrides": overrides,
        "steps": 2,
        "final_loss": 1.0 + 0.5 * seed,
        # kl is missing (None) for seed 1 and the sampler is a string: neither may be averaged.
        "eval": {"gen_accuracy": gen_accuracy, "loss": 2.0 - gen_accuracy, "kl": 0.3 if seed == 0 else None,
                 "sampler": "greedy"},
        "analyses": {"structure": {"summary": {"nt_acc": [0.4 + 0.1 * seed, 0.6]}}},
    }
    (trial_dir / "result.json").write_text(json.dumps(result, indent=2, sort_keys=True))
    lines = [{"step": step, "split": "train", "loss": 3.0 - step} for step in (1, 2)]
    (trial_dir / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))


def make_sweep(sweep_dir, grid):
    """Every combination of `grid` ({field: values}) as a finished trial, like sweep.expand."""
    for combo in itertools.product(*grid.values()):
        write_trial(sweep_dir, dict(zip(grid, combo)))
    return str(sweep_dir)


FULL_GRID = {"model.num_layers": [1, 2], "model.width": [32, 64], "model.position": ["rope", "none"], "seed": [0, 1]}


@pytest.fixture
def full_sweep(tmp_path):
    sweep_dir = make_sweep(tmp_path / "sweep", FULL_GRID)
    failed = tmp_path / "sweep" / "trials" / "num_layers=9,width=32,position=rope,seed=0"
    failed.mkdir()
    (failed / "error.txt").write_text("Traceback: boom\n")
    return sweep_dir


def test_aggregate_averages_over_seeds_per_setting(full_sweep):
    rows = report.collect(full_sweep)
    assert rows[0].overrides == ("model.num_layers", "model.position", "model.width", "seed")
    groups = report.aggregate(rows)

    settings = [(g["model.num_layers"], g["model.position"], g["model.width"]) for g in groups]
    assert sorted(settings) == sorted(itertools.product([1, 2], ["rope", "none"], [32, 64]))
    # Trial ids sort 'none' before 'rope' and 32 before 64: the first group is the first trial's.
    assert settings[0] == (1, "none", 32)
    for group, (num_layers, position, width) in zip(groups, settings):
        assert group.overrides == ("model.num_layers", "model.position", "model.width")
        assert "seed" not in group and "trial" not in group and "status" not in group
        assert group["trials"] == 2, "the failed trial must not be counted"
        mean = accuracy(num_layers, width, position, 0) + SEED_STEP / 2
        assert group["eval.gen_accuracy"] == pytest.approx(mean)
        assert group["eval.gen_accuracy.std"] == pytest.approx(TWO_SEED_STD)
        assert group["eval.loss"] == pytest.approx(2.0 - mean)
        assert group["final_loss"] == pytest.approx(1.25)
        assert group["final_loss.std"] == pytest.approx(0.5 / math.sqrt(2))
        assert group["eval.kl"] == pytest.approx(0.3) and group["eval.kl.std"] == 0.0
        assert group["structure.summary.nt_acc[0]"] == pytest.approx(0.45)
        assert group["structure.summary.nt_acc[1].std"] == pytest.approx(0.0)
        assert "eval.sampler" not in group and "eval.sampler.std" not in group

    # Averaging over the position too leaves one group per size, of both positions' 4 trials.
    by_size = report.aggregate(rows, over=("seed", "model.position"))
    assert [g["trials"] for g in by_size] == [4] * 4 and "model.position" not in by_size[0]
    both = [accuracy(1, 32, position, seed) for position in ("rope", "none") for seed in (0, 1)]
    assert by_size[0]["eval.gen_accuracy"] == pytest.approx(sum(both) / 4)


def test_mean_table_shows_mean_and_std_per_setting(full_sweep):
    groups = report.aggregate(report.collect(full_sweep))
    table = report.mean_table(groups, ["eval.gen_accuracy", "eval.cut_accuracy", "eval.kl", "eval.loss"])
    lines = table.splitlines()
    # cut_accuracy is in no result, so it gets no column.
    assert lines[0] == "| model.num_layers | model.position | model.width | trials | gen_accuracy | kl | loss |"
    assert len(lines) == 2 + 8
    # num_layers=1, none, width=32: accuracy 0.6 and 0.62 -> 0.610 ± 0.014; loss 2 - accuracy.
    assert lines[2] == "| 1 | none | 32 | 2 | 0.610±0.014 | 0.300±0.000 | 1.390±0.014 |"


def test_varies_looks_at_finished_rows_only(full_sweep):
    rows = report.collect(full_sweep)
    assert report.varies(rows, "seed") and report.varies(rows, "model.position")
    assert not report.varies(rows, "eval.sampler")
    assert report.varies([row for row in rows if row.get("model.num_layers") == 1], "model.width")
    assert not report.varies([row for row in rows if row.get("model.width") == 32], "model.width")


def png_width(path):
    with open(path, "rb") as handle:
        header = handle.read(24)
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(header[16:20], "big")


def test_plot_vs_size_draws_seed_means_against_depth_per_position(full_sweep, monkeypatch):
    drawn = []
    errorbar = matplotlib.axes.Axes.errorbar

    def recording_errorbar(axis, x, y, yerr=None, **kwargs):
        drawn.append((kwargs.get("label"), list(x), list(y), list(yerr)))
        return errorbar(axis, x, y, yerr=yerr, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "errorbar", recording_errorbar)
    paths = report.plot_vs_size(report.collect(full_sweep), full_sweep)
    assert paths == [os.path.join(full_sweep, "gen_accuracy_vs_size.png")]
    assert os.path.getsize(paths[0]) > 0

    # Panels follow the first appearance of each position ('none' first), one line per width.
    assert [(label, x) for label, x, _, _ in drawn] == [("width=32", [1, 2]), ("width=64", [1, 2])] * 2
    for (label, x, y, yerr), position in zip(drawn, ["none", "none", "rope", "rope"]):
        width = int(label.split("=")[1])
        expected = [accuracy(num_layers, width, position, 0) + SEED_STEP / 2 for num_layers in x]
        assert y == pytest.approx(expected) and yerr == pytest.approx([TWO_SEED_STD] * 2)

    assert report.plot_vs_size(report.collect(full_sweep), full_sweep, "eval.loss") == [
        os.path.join(full_sweep, "loss_vs_size.png")
    ]
    assert report.plot_vs_size(report.collect(full_sweep), full_sweep, "eval.not_measured") == []


def test_plot_vs_size_uses_width_alone_and_skips_sweeps_without_size(tmp_path, full_sweep):
    width_only = make_sweep(tmp_path / "widths", {"model.width": [32, 64], "seed": [0, 1]})
    (path,) = report.plot_vs_size(report.collect(width_only), width_only)
    # One panel (no position swept) is narrower than the full sweep's two.
    (full,) = report.plot_vs_size(report.collect(full_sweep), full_sweep)
    assert 0 < png_width(path) < png_width(full)

    no_size = make_sweep(tmp_path / "positions", {"model.position": ["rope", "none"], "seed": [0, 1]})
    assert report.plot_vs_size(report.collect(no_size), no_size) == []
    assert not os.path.exists(os.path.join(no_size, "gen_accuracy_vs_size.png"))


def test_report_script_writes_mean_table_and_size_plots(full_sweep):
    process = subprocess.run(
        [sys.executable, "scripts/report.py", f"--sweep={full_sweep}"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert process.returncode == 0, process.stderr
    with open(os.path.join(full_sweep, "results_mean.md")) as handle:
        mean_lines = handle.read().splitlines()
    assert len(mean_lines) == 2 + 8
    assert mean_lines[2].startswith("| 1 | none | 32 | 2 | 0.610±0.014 |")
    for name in ("results_mean.md", "gen_accuracy_vs_size.png", "loss_vs_size.png", "results.csv"):
        path = os.path.join(full_sweep, name)
        assert os.path.getsize(path) > 0 and path in process.stdout
    # The per-trial CSV holds the 16 finished trials and the failed one, and no private columns.
    with open(os.path.join(full_sweep, "results.csv")) as handle:
        header, *rows = handle.read().splitlines()
    assert len(rows) == 17 and "overrides" not in header


def test_part4_accuracy_curves_are_columns_in_numeric_order():
    rows = [{"trial": "a", "status": "done", "eval.loss": 1.0, "eval.acc": 0.5, "eval.acc_k16": 0.1, "eval.acc_k2": 0.4,
             "eval.acc_k1": 0.9, "eval.eval_queries": 320.0}]
    assert report.columns(rows) == ["trial", "status", "eval.acc", "eval.loss", "eval.acc_k1", "eval.acc_k2", "eval.acc_k16"]
