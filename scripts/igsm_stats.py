"""Compare lmphys's iGSM with the released generator: `python scripts/igsm_stats.py`.

Prints, for med and hard, each statistic of lmphys/worlds/igsm/data/released_stats.json beside
the same statistic of `--count` lmphys problems (lmphys.worlds.igsm.stats), then the share of
problems per op that land in the test bins of each split (`--per_op` problems per op).
"""
import numpy as np
from absl import app, flags

from lmphys import cli
from lmphys.worlds.igsm import DIFFICULTIES, stats

_COUNT = flags.DEFINE_integer("count", 3000, "Problems per difficulty.", lower_bound=1)
_PER_OP = flags.DEFINE_integer("per_op", 300, "Problems per op for the test-share table (0: skip it).", lower_bound=0)


def _shares(ours: dict, theirs: dict) -> str:
    return " / ".join(f"{ours[key]:.3f}" for key in theirs), " / ".join(f"{value:.3f}" for value in theirs.values())


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    reference = stats.released()
    print("| measure | difficulty | lmphys | released |\n|---|---|---|---|")
    for difficulty in ("med", "hard"):
        ours, theirs = stats.measure(stats.sample(difficulty, _COUNT.value)), reference[difficulty]
        for name, key in (("op mean", "op"), ("solution steps mean", "solution_steps"),
                          ("instance parameters mean", "instance_params")):
            print(f"| {name} | {difficulty} | {np.mean(ours[key]):.2f} | {theirs[key + '_mean']:.2f} |")
        for name in ("depth_share", "items_per_layer_share", "sentence_share", "refs_share"):
            mine, released = _shares(ours[name], theirs[name])
            print(f"| {name} ({', '.join(theirs[name])}) | {difficulty} | {mine} | {released} |")
        for name in ("answer_zero_share", "question_abstract_share", "random_number_share",
                     "test_share_released_bins", "test_share_paper_bins"):
            print(f"| {name} | {difficulty} | {ours[name]:.3f} | {theirs[name]:.3f} |")
    if _PER_OP.value:
        print("\n| difficulty | op | test share, paper bins (17..22) | released bins (16..22) |\n|---|---|---|---|")
        for difficulty in ("med", "hard"):
            level = DIFFICULTIES[difficulty]
            for op in list(range(1, level.max_train_op + 1)) + list(level.ood_ops):
                measured = stats.measure(stats.sample(difficulty, _PER_OP.value, first_seed=30_000, op=op))
                print(f"| {difficulty} | {op} | {measured['test_share_paper_bins']:.3f} | "
                      f"{measured['test_share_released_bins']:.3f} |")


if __name__ == "__main__":
    cli.run(main)
