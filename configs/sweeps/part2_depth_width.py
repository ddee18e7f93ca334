"""Part 2.1's depth-versus-width table: the same iGSM pretraining for models of about equal size
that trade layers against width; the paper finds depth matters for reasoning (20 layers x 576
beat 4 layers x 1920 on hard OOD problems).

    python scripts/sweep.py --config=configs/sweeps/part2_depth_width.py            (CPU, ~1.5 h)
    python scripts/sweep.py --config=configs/sweeps/part2_depth_width.py:med        (GPU, 10 runs of paper.py)
    python scripts/sweep.py --config=configs/sweeps/part2_depth_width.py:hard
    python scripts/sweep.py --config=configs/sweeps/part2_depth_width.py:small,4-4 \
        --config.base.train.steps=8000 --config.base.train.eval_every=2000   (one shape, ~2 h on 2 cores)
    python scripts/report.py --sweep=runs/part2_depth_width_small   (accuracy_by_op.png: one line per shape)

med / hard: the paper's shapes GPT2-4-21, 8-15, 12-12, 16-10, 20-9 and the ~2x larger 4-30, 8-21,
12-17, 16-15, 20-13 (head dim 64, width 64 H), each trained as configs/igsm/paper.py:<difficulty>.
small (the default): a CPU analogue on the "small" world, configs/igsm/small.py at head dim 32 with
four shapes of ~0.8M non-embedding parameters, GPT-2-6, 4-4, 8-3 and 16-2 (widths 192, 128, 96, 64),
800 steps each instead of 1200 so the four fit in ~1.5 h on 2 cores (the deeper, narrower models
are slower per step on a CPU: measured ~1.1, 1.3, 1.9 and 2.0 s per step; 16-2 took 33 min with
its evaluation).

After the scale, the argument may name the shapes to keep as L-H (layers-heads: 'small,4-4,16-2',
'med,20-9'), so that one shape can train longer without the others; their trial ids and
workdirs are the full sweep's, so a narrowed run and the full one share finished trials.

The shapes are joint settings (`cases`: num_layers, num_heads and width together), combined with
the seed grid; trial ids read 'num_layers=8,num_heads=15,width=960,seed=0'. More seeds
(--config.grid.seed='(0,1)') train stacked with their shape's first seed. Analyses are off; the
V-probes (layer-wise nece: deeper layers resolve parameters farther from the query) run on every
trained trial with --config.analyses='("reasoning_probes",)'.
"""
import os

import ml_collections

from lmphys.config import load_config_file
from lmphys.errors import ConfigError

# (num_layers, num_heads): the paper's five shapes and their ~2x larger versions
PAPER_SHAPES = ((4, 21), (8, 15), (12, 12), (16, 10), (20, 9), (4, 30), (8, 21), (12, 17), (16, 15), (20, 13))
SMALL_SHAPES = ((2, 6), (4, 4), (8, 3), (16, 2))
SMALL_STEPS = 800


def _keep(shapes: tuple, labels: list[str]) -> tuple:
    """The shapes named 'L-H' in labels (all of them when there are none), in the sweep's order."""
    if not labels:
        return shapes
    named = {f"{layers}-{heads}": (layers, heads) for layers, heads in shapes}
    unknown = [label for label in labels if label not in named]
    if unknown:
        raise ConfigError(f"config argument names shape(s) {', '.join(unknown)}, which this scale lacks: "
                          f"it has {', '.join(named)}")
    return tuple(shape for label, shape in named.items() if label in labels)


def get_config(arg: str = "small") -> ml_collections.ConfigDict:
    scale, *labels = arg.split(",")
    here = os.path.join(os.path.dirname(__file__), "..", "igsm")
    if scale == "small":
        base = load_config_file(os.path.join(here, "small.py"))
        base.train.steps = base.train.eval_every = SMALL_STEPS
        shapes, head_dim = SMALL_SHAPES, 32
    elif scale in ("med", "hard"):
        base = load_config_file(os.path.join(here, "paper.py"), scale)
        shapes, head_dim = PAPER_SHAPES, 64
    else:
        raise ConfigError(f"config argument {arg!r} is invalid: it must be small, med or hard, "
                          "optionally followed by shapes (small,4-4)")
    shapes = _keep(shapes, labels)
    sweep = ml_collections.ConfigDict()
    sweep.workdir = f"runs/part2_depth_width_{scale}"
    sweep.base = base
    sweep.cases = [{"model": {"num_layers": layers, "num_heads": heads, "width": head_dim * heads}}
                   for layers, heads in shapes]
    sweep.grid = ml_collections.ConfigDict({"seed": (0,)})  # a tuple, so --config.grid.seed="(0,1)" works
    sweep.analyses = ()
    return sweep
