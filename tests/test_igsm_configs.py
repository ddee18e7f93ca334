"""The Part 2 configs: every argument loads and validates, the paper settings are FACTS.md's, the
depth/width sweep plans exactly the paper's shapes, the retry sweep compares equal-token runs that
differ only in the retry data, the accuracy-by-op plot is drawn from result rows, and a small run
trains, evaluates and shows its model's solutions."""
import json
import os
import subprocess
import sys

import matplotlib.axes
import pytest

from lmphys import config as config_lib, report, sweep
from lmphys.config import load_config_file
from lmphys.errors import ConfigError
from lmphys.train import loop, run_config
from tests.conftest import REPO

IGSM, SWEEPS = os.path.join(REPO, "configs", "igsm"), os.path.join(REPO, "configs", "sweeps")
RUN_ARGS = [("paper.py", arg) for arg in ("med", "hard", "med,20-9", "hard,4-30,qp", "med,qp")]
RUN_ARGS += [("small.py", arg) for arg in ("", "8-3", "16-2", "4-4,0.5", "4-4,0.05,weak", "2-6,0.5,miss",
                                            "4-4,0.5,retry,mask")]
SWEEP_ARGS = [("part2_depth_width.py", arg) for arg in ("small", "med", "hard", "small,4-4", "med,20-9,4-21")]
SWEEP_ARGS += [("part2_retry.py", arg) for arg in ("small", "med")]
RETRY_FIELDS = {"task.retry_rate", "task.retry_kind", "task.mask_mistakes"}


def check(config):
    run_config.validate(config)


def trial_configs(name, arg):
    sweep_config = load_config_file(os.path.join(SWEEPS, name), arg)
    trials = [trial for job in sweep.plan(sweep_config) for trial in job.trials]
    return sweep_config, [trial.config(sweep_config.base, sweep_config.workdir) for trial in trials]


@pytest.mark.parametrize("name, arg", RUN_ARGS)
def test_every_run_argument_loads_and_validates(name, arg):
    config = load_config_file(os.path.join(IGSM, name), arg)
    check(config)
    assert config.task.name == "igsm" and config.model.kind == "gpt" and config.model.position == "rope"
    assert config.task.eval_len == config.model.max_len


@pytest.mark.parametrize("name, arg", SWEEP_ARGS)
def test_every_sweep_trial_validates(name, arg):
    _, configs = trial_configs(name, arg)
    for config in configs:
        check(config)
    assert len({config.workdir for config in configs}) == len(configs)


@pytest.mark.parametrize("name, arg", [("paper.py", "easy"), ("paper.py", "med,12x12"), ("paper.py", "med,4-4,8-8"),
                                       ("small.py", "0-4"), ("small.py", "4-4,x"), ("small.py", "4-4,0.5,retry,all")])
def test_bad_arguments_say_what_is_allowed(name, arg):
    with pytest.raises(ConfigError, match="config argument"):
        load_config_file(os.path.join(IGSM, name), arg)


@pytest.mark.parametrize("difficulty, weight_decay, batch_size, context, steps",
                         [("med", 0.05, 512, 768, 100_000), ("hard", 0.03, 256, 1024, 200_000)])
def test_paper_settings_are_the_papers(difficulty, weight_decay, batch_size, context, steps):
    config = load_config_file(os.path.join(IGSM, "paper.py"), difficulty)
    assert (config.model.num_layers, config.model.num_heads, config.model.width) == (12, 12, 768)
    assert (config.optim.learning_rate, config.optim.b1, config.optim.b2) == (0.002, 0.9, 0.98)
    assert (config.optim.warmup_steps, config.optim.schedule, config.optim.final_lr_fraction) == (1000, "cosine", 0.01)
    assert config.optim.weight_decay == weight_decay and config.train.steps == steps
    assert (config.task.difficulty, config.task.batch_size, config.task.seq_len) == (difficulty, batch_size, context)
    assert config.task.eval_len == config.model.max_len == context
    assert config.task.data_workers > 0 and config.task.fmt == "pq" and config.task.train_tokens == 0
    assert config.workdir == f"runs/igsm_{difficulty}_12-12"
    shaped = load_config_file(os.path.join(IGSM, "paper.py"), f"{difficulty},20-9,qp")
    assert (shaped.model.num_layers, shaped.model.num_heads, shaped.model.width) == (20, 9, 576)
    assert shaped.task.fmt == "qp" and shaped.workdir == f"runs/igsm_{difficulty}_20-9_qp"


def test_small_config_is_cpu_sized():
    config = load_config_file(os.path.join(IGSM, "small.py"))
    assert (config.model.num_layers, config.model.num_heads, config.model.width) == (4, 4, 128)
    assert (config.task.difficulty, config.task.batch_size, config.task.seq_len) == ("small", 32, 256)
    assert config.task.eval_len == config.model.max_len == 320 and config.task.data_workers == 0
    retry = load_config_file(os.path.join(IGSM, "small.py"), "8-3,0.5,weak,mask")
    assert (retry.task.retry_rate, retry.task.retry_kind, retry.task.mask_mistakes) == (0.5, "weak", True)
    assert retry.model.width == 96 and retry.workdir == "runs/igsm_small_8-3_weak0.5_mask"


PAPER_SHAPES = {(4, 21), (8, 15), (12, 12), (16, 10), (20, 9), (4, 30), (8, 21), (12, 17), (16, 15), (20, 13)}


@pytest.mark.parametrize("difficulty", ["med", "hard"])
def test_depth_width_sweep_plans_exactly_the_paper_shapes(difficulty):
    sweep_config, configs = trial_configs("part2_depth_width.py", difficulty)
    assert len(configs) == 10
    assert {(config.model.num_layers, config.model.num_heads) for config in configs} == PAPER_SHAPES
    assert all(config.model.width == 64 * config.model.num_heads for config in configs)
    base = config_lib.flat_fields(sweep_config.base)
    for config in configs:  # only the shape (and the workdir) differs from the paper run
        differing = {name for name, value in config_lib.flat_fields(config).items() if base[name] != value}
        assert differing <= {"model.num_layers", "model.num_heads", "model.width", "workdir"}
        assert config.task.difficulty == difficulty
    assert "num_layers=8,num_heads=15,width=960,seed=0" in {os.path.basename(c.workdir) for c in configs}


def test_small_depth_width_sweep_trades_depth_for_width_at_head_dim_32():
    _, configs = trial_configs("part2_depth_width.py", "small")
    shapes = sorted((config.model.num_layers, config.model.num_heads, config.model.width) for config in configs)
    assert [layers for layers, _, _ in shapes] == [2, 4, 8, 16]
    assert all(width == 32 * heads for _, heads, width in shapes)
    # About equal non-embedding parameters (12 L W^2) within 20%, so depth is what varies.
    params = [12 * layers * width ** 2 for layers, _, width in shapes]
    assert max(params) / min(params) < 1.2


def test_depth_width_sweep_narrowed_to_named_shapes_keeps_their_full_sweep_trial_ids():
    full = {os.path.basename(config.workdir): config for config in trial_configs("part2_depth_width.py", "med")[1]}
    _, narrowed = trial_configs("part2_depth_width.py", "med,20-9,4-21")
    assert sorted((config.model.num_layers, config.model.num_heads) for config in narrowed) == [(4, 21), (20, 9)]
    for config in narrowed:  # the same trial as in the full sweep: same id, workdir and settings
        assert config_lib.flat_fields(config) == config_lib.flat_fields(full[os.path.basename(config.workdir)])


@pytest.mark.parametrize("arg", ["small,3-3", "med,2-6", "tiny,4-4"])
def test_depth_width_sweep_rejects_a_shape_its_scale_lacks(arg):
    with pytest.raises(ConfigError, match="shape|invalid"):
        load_config_file(os.path.join(SWEEPS, "part2_depth_width.py"), arg)


@pytest.mark.parametrize("scale", ["small", "med"])
def test_retry_sweep_compares_equal_tokens_and_only_the_retry_data(scale):
    sweep_config, configs = trial_configs("part2_retry.py", scale)
    settings = {(c.task.retry_rate, c.task.retry_kind, c.task.mask_mistakes) for c in configs}
    assert settings == {(0.0, "retry", False), (0.05, "retry", False), (0.2, "retry", False), (0.5, "retry", False),
                        (0.5, "weak", False), (0.5, "miss", False), (0.5, "retry", True)}
    assert len(configs) == 7 and len({config.task.train_tokens for config in configs}) == 1
    assert configs[0].task.train_tokens > 0
    base = config_lib.flat_fields(sweep_config.base)
    for config in configs:
        differing = {name for name, value in config_lib.flat_fields(config).items() if base[name] != value}
        assert differing <= RETRY_FIELDS | {"workdir"}


def fabricated_rows(sweep_dir):
    """Two shapes x two seeds of Part 2 results, as report.collect returns them, plus a failed trial;
    accuracy falls with op and the deeper model holds up better out of distribution."""
    rows = []
    for layers, heads in ((4, 21), (20, 9)):
        for seed in (0, 1):
            overrides = {"model.num_layers": layers, "model.num_heads": heads, "model.width": 64 * heads, "seed": seed}
            trial = ",".join(f"{name.split('.')[-1]}={value}" for name, value in overrides.items())
            row = report.Row(trial=trial, status="done", overrides=tuple(overrides))
            row.update(overrides)
            row.update({f"eval.acc_op{op}": max(0.0, 1.0 - op * (0.04 if layers == 4 else 0.02) - 0.01 * seed)
                        for op in list(range(1, 16)) + [20, 21, 22, 23]})
            rows.append(row)
            os.makedirs(os.path.join(sweep_dir, "trials", trial))
            with open(os.path.join(sweep_dir, "trials", trial, "config.json"), "w") as handle:
                json.dump({"task": {"difficulty": "med"}}, handle)
    rows.append(report.Row(trial="num_layers=9", status="failed"))
    return rows


@pytest.fixture
def drawn(monkeypatch):
    """What the plot draws: ('line', label, x, y, yerr) per line and ('ood', x) per vertical line."""
    calls = []
    errorbar, axvline = matplotlib.axes.Axes.errorbar, matplotlib.axes.Axes.axvline

    def recording_errorbar(axis, x, y, yerr=None, **kwargs):
        calls.append(("line", kwargs.get("label"), list(x), list(y), list(yerr)))
        return errorbar(axis, x, y, yerr=yerr, **kwargs)

    def recording_axvline(axis, x=0, *args, **kwargs):
        calls.append(("ood", x))
        return axvline(axis, x, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "errorbar", recording_errorbar)
    monkeypatch.setattr(matplotlib.axes.Axes, "axvline", recording_axvline)
    return calls


def test_accuracy_by_op_draws_one_line_per_shape_and_marks_the_ood_ops(tmp_path, drawn):
    rows = fabricated_rows(str(tmp_path))
    (path,) = report.plot_accuracy_by_op(rows, str(tmp_path))
    assert path == str(tmp_path / "accuracy_by_op.png")
    with open(path, "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    lines = [call for call in drawn if call[0] == "line"]
    assert [label for _, label, *_ in lines] == ["GPT2-4-21", "GPT2-20-9"]  # by depth, seeds averaged
    _, _, ops, accuracy, std = lines[0]
    assert ops == list(range(1, 16)) + [20, 21, 22, 23]
    assert accuracy[0] == pytest.approx(1.0 - 0.04 - 0.005) and std[0] == pytest.approx(0.01 / 2 ** 0.5)
    assert [call for call in drawn if call[0] == "ood"] == [("ood", 15.5)]  # med trains on ops <= 15 (config.json)
    assert report.plot_accuracy_by_op([report.Row(trial="x", status="failed")], str(tmp_path)) == []


def test_accuracy_by_op_labels_retry_settings(tmp_path, drawn):
    rows = []
    for index, (rate, kind, mask) in enumerate(((0.0, "retry", None), (0.5, "weak", None), (0.2, "retry", None),
                                                (0.5, "retry", True))):
        overrides = {"task.retry_rate": rate, "task.retry_kind": kind}
        overrides.update({"task.mask_mistakes": mask} if mask else {})
        rows.append(report.Row(trial=str(index), status="done", overrides=tuple(overrides), **overrides,
                               **{"eval.acc_op1": 1.0, "eval.acc_op5": 0.5}))
    report.plot_accuracy_by_op(rows, str(tmp_path), difficulty="small")
    labels = [call[1] for call in drawn if call[0] == "line"]
    assert sorted(labels) == ["clean", "retry 0.2", "retry 0.5 masked", "weak 0.5"] and labels[0] == "clean"
    assert ("ood", 4.5) in drawn


def test_results_tables_show_in_distribution_and_ood_accuracy():
    rows = [report.Row(trial="a", status="done", **{"eval.acc_op1": 1.0, "eval.answer_ood": 0.5, "eval.acc_ood": 0.78,
                                                    "eval.answer_id": 0.9, "eval.acc_id": 0.99})]
    names = report.columns(rows)
    assert names[:6] == ["trial", "status", "eval.acc_id", "eval.acc_ood", "eval.answer_id", "eval.answer_ood"]
    assert "| acc_id | acc_ood | answer_id | answer_ood |" in report.markdown_table(rows, names)


@pytest.mark.slow
def test_a_tiny_small_run_evaluates_and_generate_shows_its_solutions(tmp_path):
    config = load_config_file(os.path.join(IGSM, "small.py"), "1-1,0.5")
    config.workdir = str(tmp_path / "run")
    config.train.steps = config.train.eval_every = config.train.checkpoint_every = 2
    config.task.batch_size, config.task.eval_problems, config.task.eval_ops = 4, 2, "1,5"
    config.parallel.data = 1
    summary = loop.run(config, log=lambda line: None)
    assert {"acc_id", "answer_id", "finished_id", "finished_ood"} <= set(summary.eval_metrics)
    result = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "generate.py"), f"--workdir={config.workdir}",
                             "--split=test", "--op=1", "--count=3"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"{config.workdir} at step 2 (igsm small pq, retry retry 0.5): 3 problems")
    assert sum(line.startswith("Model: ") for line in lines) == sum(line.startswith("checker: ") for line in lines) == 3
    assert " finished, " in lines[-1] and "/3 whole solutions right" in lines[-1] and "[BACK] per solution" in lines[-1]
    assert lines[0].endswith("3 problems, greedy")
    # Sampled at temperature 1, the barely trained model writes other solutions than its greedy ones.
    sampled = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "generate.py"), f"--workdir={config.workdir}",
                              "--split=test", "--op=1", "--count=3", "--temperature=1"],
                             capture_output=True, text=True, timeout=300)
    assert sampled.returncode == 0, sampled.stderr[-2000:]
    sampled_lines = sampled.stdout.splitlines()
    assert sampled_lines[0].endswith("3 problems, sampled at temperature 1")
    models = lambda lines: [line for line in lines if line.startswith("Model: ")]
    assert len(models(sampled_lines)) == 3 and models(sampled_lines) != models(lines)
    bad = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "generate.py"), f"--workdir={tmp_path}"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr and "holds no config.json" in bad.stderr
