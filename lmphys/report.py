"""Tables and plots from a sweep's finished trials (their result.json and metrics.jsonl).

`collect` flattens each trial's result into one row of dotted columns (per-level lists become
`name[level]`), `write_tables` writes results.csv and results.md, `plot` draws the standard PNGs:
final metrics per trial, probe accuracies per level against the random-init baseline, loss curves.
"""
from __future__ import annotations

import csv
import json
import math
import os
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
    "eval.token_accuracy",
    "eval.loss",
)


def _flat(tree: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(tree, dict):
        for name, value in tree.items():
            _flat(value, f"{prefix}.{name}" if prefix else str(name), out)
    elif isinstance(tree, (list, tuple)):
        for index, value in enumerate(tree):
            _flat(value, f"{prefix}[{index}]", out)
    else:
        out[prefix] = tree


def collect(sweep_dir: str) -> list[dict[str, Any]]:
    """One row per trial directory: 'trial', 'status', the overrides, then the flattened result."""
    trials_dir = os.path.join(sweep_dir, "trials")
    if not os.path.isdir(trials_dir):
        raise DataError(f"{sweep_dir} holds no trials/ directory: is it a sweep workdir?")
    rows = []
    for trial_id in sorted(os.listdir(trials_dir)):
        trial_dir = os.path.join(trials_dir, trial_id)
        row: dict[str, Any] = {"trial": trial_id}
        result_path = os.path.join(trial_dir, RESULT_FILE)
        if os.path.exists(result_path):
            with open(result_path) as handle:
                result = json.load(handle)
            row["status"] = "done"
            row.update(result["overrides"])
            flat: dict[str, Any] = {}
            _flat({"eval": result["eval"], "final_loss": result["final_loss"], **result["analyses"]}, "", flat)
            row.update(flat)
        else:
            row["status"] = "failed" if os.path.exists(os.path.join(trial_dir, ERROR_FILE)) else "unfinished"
        rows.append(row)
    return rows


def columns(rows: list[dict[str, Any]], include: tuple[str, ...] = ()) -> list[str]:
    """Table columns: trial and status, the preferred metrics present, then `include` patterns."""
    present = {name for row in rows for name in row}
    chosen = ["trial", "status"] + [name for name in _PREFERRED if name in present]
    for pattern in include:
        chosen += sorted(name for name in present if name.startswith(pattern) and name not in chosen)
    return chosen


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
