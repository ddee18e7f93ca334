"""Part 4.1's headline comparison: Canon layers on and off, with RoPE, RoPE on a quarter of the
head dims and NoPE, at the paper's four model shapes, on one synthetic task.

    python scripts/sweep.py --config=configs/sweeps/part4_canon.py:depo1                (GPU: 5 x 4 shapes x 4 lr)
    python scripts/sweep.py --config=configs/sweeps/part4_canon.py:brevo1,90
    python scripts/sweep.py --config=configs/sweeps/part4_canon.py:mano,small,nope,nope+canon   (CPU, ~30 min)
    python scripts/sweep.py --config=configs/sweeps/part4_canon.py:cfg3j               (Lano, configs/cfg/lano.py)
    python scripts/report.py --sweep=runs/part4_canon_mano_small

The argument is "<task>[,<N or L>][,small][,<architecture>...]": a task (depo1, depo2, brevo1,
brevo2, mano of configs/depo, brevo, mano; cfg3f, cfg3j, cfg3k of configs/cfg/lano.py), a data
size (default: the paper's largest, or the small config's), `small` for the CPU configs
(configs/<world>/small.py; depo, brevo, mano), and the architectures to compare
(lmphys/models/part4.py; default all five: rope, rope+canon, rope4+canon, nope, nope+canon).

Paper scale: each architecture at 8L512D, 12L512D, 8L768D and 12L768D, each over the paper's
learning-rate grid (Depo, Brevo: 3e-4, 5e-4, 1e-3, 2e-3; Mano: 1e-4, 2e-4, 3e-4, 5e-4 with two
seeds; Lano: 2e-4, 3e-4, 5e-4, 1e-3): the paper reports the best rate of each cell. The rates (and seeds) of one architecture
and shape differ only in the optimizer, so they train stacked as one job (lmphys/sweep.py): 20
jobs of 4 (Mano: 8) models. Small: the small config's shape and rate, one model per architecture.
"""
import itertools
import os

import ml_collections

from lmphys.config import load_config_file
from lmphys.errors import ConfigError
from lmphys.models import part4

# task: (config file under configs/, its variant argument, learning-rate grid, seeds) at the paper's
# scale (Part 4.1, Appendix A); small: configs/<world>/small.py with the same variant
_PART4_RATES, _LANO_RATES = (3e-4, 5e-4, 1e-3, 2e-3), (2e-4, 3e-4, 5e-4, 1e-3)
TASKS = {
    "depo1": ("depo/paper.py", "depo1", _PART4_RATES, (0,)),
    "depo2": ("depo/paper.py", "depo2", _PART4_RATES, (0,)),
    "brevo1": ("brevo/paper.py", "brevo1", _PART4_RATES, (0,)),
    "brevo2": ("brevo/paper.py", "brevo2", _PART4_RATES, (0,)),
    "mano": ("mano/paper.py", "mano", (1e-4, 2e-4, 3e-4, 5e-4), (0, 1)),
    "cfg3f": ("cfg/lano.py", "cfg3f", _LANO_RATES, (0,)),
    "cfg3j": ("cfg/lano.py", "cfg3j", _LANO_RATES, (0,)),
    "cfg3k": ("cfg/lano.py", "cfg3k", _LANO_RATES, (0,)),
}
SMALL_WORLDS = ("depo", "brevo", "mano")  # the tasks with a CPU-scale config
PAPER_SHAPES = ("8L512D", "12L512D", "8L768D", "12L768D")
# what each architecture changes in the model config beside the block every column shares
# (part4.apply_architecture): only the fields that differ from Llama(RoPE), so trial ids stay short
ARCHITECTURE_FIELDS = {
    "rope": {"position": "rope"},
    "rope+canon": {"position": "rope", "canon": "ABCD"},
    "rope4+canon": {"position": "rope", "rope_fraction": 0.25, "canon": "ABCD"},
    "nope": {"position": "none"},
    "nope+canon": {"position": "none", "canon": "ABCD"},
}
USAGE = "<task>[,<N or L>][,small][,<architecture>...] with a task of " + ", ".join(TASKS)


def get_config(arg: str = "depo1") -> ml_collections.ConfigDict:
    task, *parts = arg.split(",")
    if task not in TASKS:
        raise ConfigError(f"config argument {arg!r} is invalid: it must be {USAGE}")
    path, variant, learning_rates, seeds = TASKS[task]
    size, small, architectures = None, False, []
    for part in parts:
        if part.isdigit():
            size = part
        elif part == "small":
            small = True
        elif part in ARCHITECTURE_FIELDS:
            architectures.append(part)
        else:
            raise ConfigError(f"config argument {arg!r} is invalid: {part!r} is no size, 'small' or architecture "
                              f"({', '.join(part4.ARCHITECTURES)}); it must be {USAGE}")
    world = os.path.dirname(path)
    if small and world not in SMALL_WORLDS:
        raise ConfigError(f"config argument {arg!r} is invalid: small configs exist for {', '.join(SMALL_WORLDS)} "
                          "(a CPU-scale grammar run is configs/cfg/small.py)")
    if size and world == "cfg":
        raise ConfigError(f"config argument {arg!r} is invalid: a grammar task takes no size")
    architectures = architectures or list(part4.ARCHITECTURES)
    scale = "small" if small else "paper"
    file = os.path.join(os.path.dirname(__file__), "..", f"{world}/small.py" if small else path)
    base = load_config_file(file, ",".join([variant] + ([size] if size else []) + ["rope"]))

    sweep = ml_collections.ConfigDict()
    sweep.workdir = f"runs/part4_canon_{task}{'_' + size if size else ''}_{scale}"
    sweep.base = base
    shapes = [None] if small else PAPER_SHAPES
    sweep.cases = [{"model": {**ARCHITECTURE_FIELDS[name], **_shape_fields(shape)}}
                   for name, shape in itertools.product(architectures, shapes)]
    grid = {"seed": (0,)} if small else {"optim": {"learning_rate": learning_rates}, "seed": seeds}
    sweep.grid = ml_collections.ConfigDict(grid)
    sweep.analyses = ()
    return sweep


def _shape_fields(shape: str | None) -> dict:
    if shape is None:
        return {}
    model = ml_collections.ConfigDict({"num_layers": 0, "num_heads": 0, "width": 0})
    part4.apply_shape(model, shape)
    return {"num_layers": model.num_layers, "num_heads": model.num_heads, "width": model.width}
