"""Part 4.1's Lano (hierarchical language structure): a Part 1 grammar on one of Part 4.1's model
columns and shapes, for a GPU.

    python scripts/train.py --config=configs/cfg/lano.py:cfg3f                     (Llama(RoPE) 8L512D, context 512)
    python scripts/train.py --config=configs/cfg/lano.py:cfg3j,nope+canon,12L768D  (context 1536)

The argument is "<cfg3f|cfg3j|cfg3k>[,<architecture>][,<layers>L<width>D]": the grammar, an
architecture of lmphys/models/part4.py (rope, rope+canon, rope4+canon, nope, nope+canon; default
rope) and a shape with 64-dim heads (default 8L512D). Everything else is configs/cfg/paper.py's
(Part 4.1 App. A.5 as FACTS.md has it): context 512 for cfg3f and 1536 for cfg3j/cfg3k, batch 96,
100k steps, AdamW (0.9, 0.98) eps 1e-6, weight decay 0.1, no warmup, linear decay to 0, loss on
every token; the paper reports the best learning rate of 2e-4, 3e-4, 5e-4, 1e-3
(configs/sweeps/part4_canon.py sweeps them, stacked). Evaluation: generation accuracy (strings the
exact parser accepts) and the KL of the next-token law, as in Part 1.
"""
import os

import ml_collections

from lmphys.config import load_config_file
from lmphys.errors import ConfigError
from lmphys.models import part4

GRAMMARS = ("cfg3f", "cfg3j", "cfg3k")
USAGE = "<cfg3f|cfg3j|cfg3k>[,<architecture>][,<layers>L<width>D], e.g. cfg3j,rope+canon"


def get_config(arg: str = "cfg3f") -> ml_collections.ConfigDict:
    grammar, *parts = arg.split(",")
    architecture, shape = "rope", "8L512D"
    for part in parts:
        if part in part4.ARCHITECTURES:
            architecture = part
        elif part4.SHAPE.fullmatch(part):
            shape = part
        else:
            grammar = None
    if grammar not in GRAMMARS:
        raise ConfigError(f"config argument {arg!r} is invalid: it must be {USAGE}")
    config = load_config_file(os.path.join(os.path.dirname(__file__), "paper.py"), grammar)
    part4.apply_architecture(config.model, architecture)
    part4.apply_shape(config.model, shape)
    config.optim.learning_rate = 1e-3
    config.optim.b1, config.optim.b2, config.optim.eps = 0.9, 0.98, 1e-6
    config.optim.weight_decay = 0.1
    config.workdir = f"runs/lano_{grammar}_{architecture}_{shape}"
    return config
