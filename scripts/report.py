"""Summarise a sweep: `python scripts/report.py --sweep=runs/part1_small`.

Prints one Markdown table (a row per trial), writes results.csv (every column), results.md and
PNG plots into the sweep directory: accuracy.png (final accuracies per trial), probes.png (structure
probe accuracies, trained and random init, when the trials ran the structure analysis) and
loss_curves.png. When the sweep has several seeds it also prints and writes results_mean.md (one
row per setting, each metric as mean±std over the seeds); when it varies depth or width it draws
gen_accuracy_vs_size.png and loss_vs_size.png (one panel per position scheme). Knowledge-world
sweeps add qa.png (QA accuracy of the trained and the held-out half per trial) and, with the
capacity analysis, capacity.png (bits of knowledge against parameters). iGSM sweeps (Part 2) add
accuracy_by_op.png (accuracy per op, one line per setting, the OOD ops marked) and acc_id / acc_ood
columns.

Exit status 0, or 2 with `error: <sentence>` for a directory that is not a sweep, a sweep without
trials yet, or a damaged result.json (74 if a table or plot cannot be written).
"""

from absl import app, flags

from lmphys import report
from lmphys import cli

_SWEEP = flags.DEFINE_string("sweep", None, "A sweep workdir (holding trials/).", required=True)
_INCLUDE = flags.DEFINE_list(
    "include", ["structure.summary", "capacity.bits_per_param", "capacity.ceiling", "knowledge_probes.summary",
                "reasoning_probes.summary", "low_temperature"],
    "Prefixes of further result columns to show in the table."
)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    rows = report.collect(_SWEEP.value)
    names = report.columns(rows, tuple(_INCLUDE.value))
    print(report.markdown_table(rows, names))
    written = report.write_tables(rows, _SWEEP.value, names)
    if report.varies(rows, "seed"):
        means = report.aggregate(rows)
        metric_names = [name for name in names if name not in ("trial", "status")]
        print("\nmean ± std over seeds:\n" + report.mean_table(means, metric_names))
        written += (report.write_mean_table(means, _SWEEP.value, metric_names),)
    every = sorted({name for row in rows for name in row})
    groups = {
        "accuracy": [name for name in names if name.endswith("accuracy")],
        "probes": [name for name in every if name.startswith("structure.summary.nt_")],
        "qa": [name for name in names if name.startswith(("eval.qa_", "eval.manip_"))],
    }
    written += tuple(report.plot(rows, _SWEEP.value, groups))
    for metric in ("eval.gen_accuracy", "eval.loss"):
        written += tuple(report.plot_vs_size(rows, _SWEEP.value, metric))
    written += tuple(report.plot_capacity(rows, _SWEEP.value))
    written += tuple(report.plot_accuracy_by_op(rows, _SWEEP.value))  # none without eval.acc_op<k> columns
    print("\nwrote " + ", ".join(written))


if __name__ == "__main__":
    cli.run(main)
