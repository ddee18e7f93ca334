"""Tables and plots from a sweep's finished trials (their result.json and metrics.jsonl).

`collect` flattens each trial's result into one row of dotted columns (per-level lists become
`name[level]`), `write_tables` writes results.csv and results.md, `plot` draws the standard PNGs:
final metrics per trial, probe accuracies per level against the random-init baseline, loss curves.
`aggregate` averages the rows over seeds, `write_mean_table` writes that as results_mean.md and
`plot_vs_size` draws a metric against depth and width, one panel per position scheme;
`plot_accuracy_by_op` draws iGSM accuracy against the number of operations (Part 2).
"""
from __future__ import annotations

import csv
import json
import math
import os
import re
import statistics
from typing import Any

from lmphys.errors import DataError
from lmphys.sweep import ERROR_FILE, RESULT_FILE
from lmphys.train import metrics

# Columns shown first when present, in this order; every other scalar column follows.
_PREFERRED = (
    "eval.gen_accuracy",
    "eval.cut_accuracy",
    "eval.corrupted_cut_accuracy",
    "eval.kl",
    "eval.distinct_fraction",
    "eval.entropy_bits",
    "eval.qa_train",
    "eval.qa_test",
    "eval.manip_train",
    "eval.manip_train_final",
    "eval.manip_test",
    "eval.manip_test_final",
    "eval.acc_id",
    "eval.acc_ood",
    "eval.answer_id",
    "eval.answer_ood",
    "eval.finished_id",
    "eval.finished_ood",
    "eval.acc",
    "eval.acc_strict",
    "eval.token_accuracy",
    "eval.loss",
)
# Part 4.1's accuracy curves (by hop count, depth, ancestor count, expression length), shown after
# the preferred columns when present, in numeric order (acc_k2 before acc_k16).
_CURVE_PREFIXES = ("eval.acc_k", "eval.acc_depth", "eval.acc_anc", "eval.acc_len")


def _flat(tree: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(tree, dict):
        for name, value in tree.items():
            _flat(value, f"{prefix}.{name}" if prefix else str(name), out)
    elif isinstance(tree, (list, tuple)):
        for index, value in enumerate(tree):
            _flat(value, f"{prefix}[{index}]", out)
    else:
        out[prefix] = tree


class Row(dict):
    """A table row. `overrides` names the columns that came from the sweep grid; it is an attribute,
    not a key, so it never shows up as a column in tables or CSV."""

    def __init__(self, *args: Any, overrides: tuple[str, ...] = (), **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.overrides = overrides


def collect(sweep_dir: str) -> list[Row]:
    """One row per trial directory: 'trial', 'status', the overrides, then the flattened result.
    Each row's `overrides` attribute names its override columns (empty for unfinished trials)."""
    trials_dir = os.path.join(sweep_dir, "trials")
    if not os.path.isdir(trials_dir):
        raise DataError(f"{sweep_dir} holds no trials/ directory: is it a sweep workdir?")
    trial_ids = sorted(name for name in os.listdir(trials_dir) if os.path.isdir(os.path.join(trials_dir, name)))
    if not trial_ids:
        raise DataError(f"{trials_dir} holds no trials yet: run the sweep first (scripts/sweep.py)")
    rows = []
    for trial_id in trial_ids:
        trial_dir = os.path.join(trials_dir, trial_id)
        row = Row(trial=trial_id)
        result_path = os.path.join(trial_dir, RESULT_FILE)
        if os.path.exists(result_path):
            result = _read_result(result_path)
            row["status"] = "done"
            row.update(result["overrides"])
            row.overrides = tuple(result["overrides"])
            flat: dict[str, Any] = {}
            _flat({"eval": result["eval"], "final_loss": result["final_loss"], **result["analyses"]}, "", flat)
            row.update(flat)
        else:
            row["status"] = "failed" if os.path.exists(os.path.join(trial_dir, ERROR_FILE)) else "unfinished"
        rows.append(row)
    return rows


def _read_result(path: str) -> dict[str, Any]:
    """A trial's result.json, checked for the parts a row is made of (DataError otherwise)."""
    try:
        with open(path) as handle:
            result = json.load(handle)
    except ValueError as error:
        raise DataError(f"{path} is not valid JSON ({error}): delete it and rerun the sweep to redo that trial") from None
    missing = [key for key in ("overrides", "eval", "final_loss", "analyses")
               if not isinstance(result, dict) or key not in result]
    if missing:
        raise DataError(f"{path} lacks {', '.join(missing)}: delete it and rerun the sweep to redo that trial")
    return result


def columns(rows: list[dict[str, Any]], include: tuple[str, ...] = ()) -> list[str]:
    """Table columns: trial and status, the preferred metrics present, then `include` patterns."""
    present = {name for row in rows for name in row}
    chosen = ["trial", "status"] + [name for name in _PREFERRED if name in present]
    for prefix in _CURVE_PREFIXES:
        chosen += sorted((name for name in present if name.startswith(prefix)), key=_natural)
    for pattern in include:
        chosen += sorted(name for name in present if name.startswith(pattern) and name not in chosen)
    return chosen


def _natural(name: str) -> tuple:
    """Sort key reading the digit runs of `name` as numbers."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


# Prefixes dropped from Markdown headers (the CSV keeps full names).
_HEADER_PREFIXES = ("eval.", "structure.summary.")


def _header(name: str) -> str:
    for prefix in _HEADER_PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def markdown_table(rows: list[dict[str, Any]], names: list[str]) -> str:
    lines = ["| " + " | ".join(_header(name) for name in names) + " |", "|" + "---|" * len(names)]
    lines += ["| " + " | ".join(_cell(row.get(name)) for name in names) + " |" for row in rows]
    return "\n".join(lines)


def write_tables(rows: list[dict[str, Any]], sweep_dir: str, names: list[str]) -> tuple[str, str]:
    """results.csv (every column) and results.md (the chosen ones) in the sweep directory."""
    every = sorted({name for row in rows for name in row}, key=lambda name: (name not in names, name))
    csv_path = os.path.join(sweep_dir, "results.csv")
    with open(csv_path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=every)
        writer.writeheader()
        writer.writerows(rows)
    md_path = os.path.join(sweep_dir, "results.md")
    with open(md_path, "w") as handle:
        handle.write(markdown_table(rows, names) + "\n")
    return csv_path, md_path


def _numeric(value: Any) -> bool:
    # bools are ints to Python, but they are flags, not measurements to average.
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _distinct(rows: list[dict[str, Any]], name: str) -> list[Any]:
    """The values of column `name` in `rows`, without repeats, in order of first appearance."""
    values: list[Any] = []
    for row in rows:
        if name in row and row[name] not in values:
            values.append(row[name])
    return values


def varies(rows: list[dict[str, Any]], name: str) -> bool:
    """Whether the finished rows hold more than one value of column `name`."""
    return len(_distinct([row for row in rows if row["status"] == "done"], name)) > 1


def aggregate(rows: list[Row], over: tuple[str, ...] = ("seed",)) -> list[Row]:
    """One row per group of finished rows (from `collect`) that agree on every override column
    except those in `over`: the group's override values, 'trials' (its size), and for every numeric
    metric column `name` the mean as `name` and the sample std as `name.std` (0.0 for a single
    trial); None and non-numeric values are skipped. Groups keep the order of their first row, and
    each returned row's `overrides` names the grouping columns."""
    done = [row for row in rows if row["status"] == "done"]
    keys = [name for name in dict.fromkeys(name for row in done for name in row.overrides) if name not in over]
    groups: dict[str, list[Row]] = {}
    for row in done:
        # Override values came from JSON, so their JSON text is a hashable key even for lists.
        groups.setdefault(json.dumps([row.get(name) for name in keys]), []).append(row)
    return [_summarise(members, keys) for members in groups.values()]


def _summarise(members: list[Row], keys: list[str]) -> Row:
    summary = Row({name: members[0].get(name) for name in keys}, overrides=tuple(keys))
    summary["trials"] = len(members)
    not_metrics = {"trial", "status", *(name for row in members for name in row.overrides)}
    for name in dict.fromkeys(name for row in members for name in row if name not in not_metrics):
        values = [row[name] for row in members if _numeric(row.get(name))]
        if not values:
            continue
        summary[name] = statistics.fmean(values)
        summary[f"{name}.std"] = statistics.stdev(values) if len(values) > 1 else 0.0
    return summary


def _mean_cell(row: dict[str, Any], name: str) -> str:
    std = row.get(f"{name}.std")
    if std is None or not _numeric(row.get(name)):
        return _cell(row.get(name))
    return f"{row[name]:.3f}±{std:.3f}"


def mean_table(groups: list[Row], metric_names: list[str]) -> str:
    """Markdown table of `aggregate` rows: the grouping overrides, 'trials', then the columns of
    `metric_names` that some group has, each metric cell as 'mean±std'."""
    names = list(groups[0].overrides if groups else ()) + ["trials"]
    names += [name for name in metric_names if any(name in group for group in groups)]
    return markdown_table([{name: _mean_cell(group, name) for name in names} for group in groups], names)


def write_mean_table(groups: list[Row], sweep_dir: str, metric_names: list[str]) -> str:
    """results_mean.md (the `mean_table`) in the sweep directory; returns its path."""
    path = os.path.join(sweep_dir, "results_mean.md")
    with open(path, "w") as handle:
        handle.write(mean_table(groups, metric_names) + "\n")
    return path


def _bars(rows: list[dict[str, Any]], names: list[str], title: str, path: str) -> None:
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(max(7, 0.35 * len(rows) * len(names) + 3), 4))
    width = 0.8 / len(names)
    for offset, name in enumerate(names):
        values = [row.get(name, float("nan")) for row in rows]
        axis.bar([i + offset * width for i in range(len(rows))], values, width, label=_header(name))
    axis.set_xticks([i + 0.4 - width / 2 for i in range(len(rows))], [row["trial"] for row in rows], rotation=20)
    axis.set_ylim(0, 1.05)
    axis.set_title(title)
    axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot(rows: list[dict[str, Any]], sweep_dir: str, bar_groups: dict[str, list[str]]) -> list[str]:
    """PNG files: for each {name: columns} of `bar_groups`, <name>.png with one bar group per
    finished trial; and loss_curves.png with every trial's train loss."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [row for row in rows if row["status"] == "done"]
    paths = []
    for name, group in bar_groups.items():
        if done and group:
            paths.append(os.path.join(sweep_dir, f"{name}.png"))
            _bars(done, group, f"{os.path.basename(os.path.normpath(sweep_dir))}: {name}", paths[-1])

    figure, axis = plt.subplots(figsize=(7, 4))
    for row in rows:
        trial_dir = os.path.join(sweep_dir, "trials", row["trial"])
        if not os.path.exists(os.path.join(trial_dir, "metrics.jsonl")):
            continue
        train = [r for r in metrics.read_metrics(trial_dir) if r["split"] == "train"]
        axis.plot([r["step"] for r in train], [r["loss"] for r in train], label=row["trial"])
    axis.set_xlabel("step")
    axis.set_ylabel("train loss")
    axis.legend(fontsize=7)
    figure.tight_layout()
    paths.append(os.path.join(sweep_dir, "loss_curves.png"))
    figure.savefig(paths[-1], dpi=120)
    plt.close(figure)
    return paths


_DEPTH, _WIDTH, _POSITION = "model.num_layers", "model.width", "model.position"


def plot_vs_size(rows: list[Row], sweep_dir: str, metric: str = "eval.gen_accuracy") -> list[str]:
    """<metric>_vs_size.png: `metric` (mean over seeds, std error bars) against depth with one
    line per width, or against width when only the width is swept; one panel per position scheme.
    Other swept overrides split the lines further. Returns the paths written: none when neither
    depth nor width varies across the finished rows, or when none of them has `metric`."""
    x_name = _DEPTH if varies(rows, _DEPTH) else _WIDTH if varies(rows, _WIDTH) else None
    groups = [group for group in aggregate(rows) if metric in group]
    if x_name is None or not groups:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # Without a swept position every group has None here, so they all share the one panel.
    positions = _distinct(groups, _POSITION) or [None]
    figure, axes = plt.subplots(
        1, len(positions), figsize=(4.5 * len(positions) + 1.5, 4), sharey=True, squeeze=False
    )
    for axis, position in zip(axes[0], positions):
        _size_lines(axis, [group for group in groups if group.get(_POSITION) == position], x_name, metric)
        if position is not None:
            axis.set_title(f"position={position}")
    axes[0][0].set_ylabel(_header(metric))
    figure.suptitle(f"{os.path.basename(os.path.normpath(sweep_dir))}: {_header(metric)} vs size")
    figure.tight_layout()
    path = os.path.join(sweep_dir, f"{_header(metric)}_vs_size.png")
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return [path]


def _size_lines(axis: Any, panel: list[Row], x_name: str, metric: str) -> None:
    """One error-bar line per combination of the overrides that vary in `panel`, besides x."""
    keys = [name for name in panel[0].overrides if name not in (x_name, _POSITION) and len(_distinct(panel, name)) > 1]
    lines: dict[str, list[Row]] = {}
    for group in panel:
        lines.setdefault(json.dumps([group.get(name) for name in keys]), []).append(group)
    for members in lines.values():
        members.sort(key=lambda group: group[x_name])
        label = ", ".join(f"{name.split('.')[-1]}={members[0].get(name)}" for name in keys) or None
        axis.errorbar(
            [group[x_name] for group in members],
            [group[metric] for group in members],
            yerr=[group[f"{metric}.std"] for group in members],
            marker="o",
            capsize=3,
            label=label,
        )
    axis.set_xticks(sorted(_distinct(panel, x_name)))
    axis.set_xlabel(x_name.split(".")[-1])
    if metric.endswith("accuracy"):
        axis.set_ylim(0, 1.05)
    if keys:
        axis.legend(fontsize=7)


_CAPACITY_PARAMS = "capacity.params"


def plot_capacity(rows: list[Row], sweep_dir: str) -> list[str]:
    """capacity.png (Part 3.3): bits of knowledge against parameter count, in float32 and after
    int8 / int4 quantization, with the lines of 1 and 2 bits per parameter; none without the
    capacity analysis."""
    points = [row for row in rows if _CAPACITY_PARAMS in row]
    if not points:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4.5))
    params = [row[_CAPACITY_PARAMS] for row in points]
    for label, marker in (("fp32", "o"), ("int8", "s"), ("int4", "^")):
        name = f"capacity.{label}.total"
        axis.scatter([row[_CAPACITY_PARAMS] for row in points if name in row],
                     [max(row[name], 1.0) for row in points if name in row], marker=marker, label=label)
    span = [min(params) / 1.5, max(params) * 1.5]
    for ratio in (1, 2):
        axis.plot(span, [ratio * value for value in span], linestyle="--", linewidth=1, label=f"{ratio} bit/param")
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xlabel("parameters")
    axis.set_ylabel("bits of knowledge (lower bound)")
    axis.set_title(f"{os.path.basename(os.path.normpath(sweep_dir))}: capacity")
    axis.legend(fontsize=7)
    figure.tight_layout()
    path = os.path.join(sweep_dir, "capacity.png")
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return [path]


_ACC_OP = re.compile(r"eval\.acc_op(\d+)$")
_SHAPE = ("model.num_layers", "model.num_heads", "model.width")
_RETRY = ("task.retry_rate", "task.retry_kind", "task.mask_mistakes")


def plot_accuracy_by_op(rows: list[Row], sweep_dir: str, difficulty: str | None = None) -> list[str]:
    """accuracy_by_op.png (Part 2): iGSM full-solution accuracy (eval.acc_op<k>) against the op
    count k, one line per setting (the mean over seeds, std error bars), labelled by the overrides
    that vary ("GPT2-8-15" for model shapes, "retry 0.2", "weak 0.5", "clean" for retry data), and
    a dotted line where the OOD ops start. The iGSM difficulty (for that line) is read from the
    first trial's config.json unless given. Returns the path, or nothing without acc_op columns."""
    groups = aggregate(rows)
    columns_present = {name for group in groups for name in group}
    ops = sorted(int(match.group(1)) for match in map(_ACC_OP.match, columns_present) if match)
    if not ops:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # The overrides that vary between groups; a group without one (mask_mistakes unset) has None.
    keys = [name for name in dict.fromkeys(name for group in groups for name in group.overrides)
            if len({json.dumps(group.get(name)) for group in groups}) > 1]
    groups.sort(key=lambda group: _setting_order(group, keys))
    figure, axis = plt.subplots(figsize=(7.5, 4.5))
    labels = [_op_label(group, keys) for group in groups]
    for label, group in zip(labels, groups):
        present = [op for op in ops if f"eval.acc_op{op}" in group]
        axis.errorbar(present, [group[f"eval.acc_op{op}"] for op in present],
                      yerr=[group.get(f"eval.acc_op{op}.std", 0.0) for op in present], marker="o", markersize=3,
                      capsize=2, label=label)
    max_train_op = _max_train_op(rows, sweep_dir, difficulty)
    if max_train_op is not None and max(ops) > max_train_op:
        axis.axvline(max_train_op + 0.5, color="gray", linestyle=":", linewidth=1)
        axis.text(max_train_op + 0.6, 0.02, "OOD", color="gray", fontsize=8)
    axis.set_xticks(ops)
    axis.set_xlabel("op (operations in the shortest solution)")
    axis.set_ylabel("accuracy (full solution, greedy)")
    axis.set_ylim(0, 1.05)
    axis.set_title(f"{os.path.basename(os.path.normpath(sweep_dir))}: accuracy by op")
    if any(labels):
        axis.legend(fontsize=7, loc="best")
    figure.tight_layout()
    path = os.path.join(sweep_dir, "accuracy_by_op.png")
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return [path]


def _op_label(group: Row, keys: list[str]) -> str:
    """'GPT2-8-15' (head dim 64; else 'GPT-4-4 (128 wide)'), 'retry 0.2' / 'weak 0.5 masked' /
    'clean', then 'name=value' for any other override that varies."""
    parts, covered = [], set()
    layers, heads, width = (group.get(name) for name in _SHAPE)
    if layers is not None and heads is not None and any(name in keys for name in _SHAPE):
        parts.append(f"GPT2-{layers}-{heads}" if width == 64 * heads
                     else f"GPT-{layers}-{heads}" + (f" ({width} wide)" if width is not None else ""))
        covered |= set(_SHAPE)
    rate = group.get("task.retry_rate")
    if rate is not None and any(name in keys for name in _RETRY):
        masked = " masked" if group.get("task.mask_mistakes") else ""
        parts.append(f"{group.get('task.retry_kind') or 'retry'} {rate:g}{masked}" if rate else "clean")
        covered |= set(_RETRY)
    parts += [f"{name.split('.')[-1]}={group.get(name)}" for name in keys if name not in covered]
    return ", ".join(parts)


def _setting_order(group: Row, keys: list[str]) -> tuple:
    """Lines in the order of their override values (numbers by size, missing values last)."""
    values = [group.get(name) for name in keys]
    return tuple((value is None, value if _numeric(value) else 0, str(value)) for value in values)


def _max_train_op(rows: list[Row], sweep_dir: str, difficulty: str | None) -> int | None:
    """The largest training op of the sweep's iGSM difficulty (None when it is unknown)."""
    from lmphys.worlds.igsm import DIFFICULTIES  # on use: only iGSM sweeps draw accuracy by op

    if difficulty is None:
        for row in rows:
            path = os.path.join(sweep_dir, "trials", row["trial"], "config.json")
            if row["status"] == "done" and os.path.exists(path):
                with open(path) as handle:
                    difficulty = json.load(handle).get("task", {}).get("difficulty")
                break
    return DIFFICULTIES[difficulty].max_train_op if difficulty in DIFFICULTIES else None
