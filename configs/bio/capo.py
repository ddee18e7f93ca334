"""Part 4.1's Capo (knowledge capacity): bioS biographies seen 100 times each, on one of Part 4.1's
model columns and a Part 3.3 model size, measured in bits of knowledge per parameter.

    python scripts/train.py --config=configs/bio/capo.py                         (1,000 people, Llama(RoPE) 2-3)
    python scripts/train.py --config=configs/bio/capo.py:50000,rope+canon,8-6    (GPU)
    python scripts/probe.py --workdir=runs/capo_50000_rope+canon_8-6 --analyses=capacity

The argument is "[<N>][,<architecture>][,<layers>-<heads>]": N people (default 1,000; the paper's
Capo uses 50K to 2M), an architecture of lmphys/models/part4.py (default rope) and a Part 3.3 size
l-h (l layers, h heads of 64 dims; default 2-3). Part 4.1 (Sec. 2) takes Part 3.3's bioS capacity
setup in its undertrained regime, 100 exposures per biography, and plots bits against model size;
everything not named here is configs/bio/capacity.py:bios,100 (fresh templates per exposure as far
as the 2^26-token pool holds, context 128). The pool bounds N: at 100 exposures 958,000 people
with one rendering each (2^26 / 70 tokens) is about the most it holds (a larger N is a ConfigError), so the paper's 1M and
2M points need a bigger pool than lmphys's bio task packs today.
"""
import os
import re

import ml_collections

from lmphys.config import load_config_file
from lmphys.errors import ConfigError
from lmphys.models import part4

EXPOSURES = 100
POOL_TOKENS, TOKENS_PER_RENDERING = 2**26, 70  # as configs/bio/capacity.py: the task's pool, a bioS document
SIZE = re.compile(r"([1-9]\d*)-([1-9]\d*)")
USAGE = "[<N>][,<architecture>][,<layers>-<heads>], e.g. 50000,rope+canon,8-6"


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    config = load_config_file(os.path.join(os.path.dirname(__file__), "capacity.py"), f"bios,{EXPOSURES}")
    people, architecture, layers, heads = 1000, "rope", 2, 3
    for part in filter(None, arg.split(",")):
        size = SIZE.fullmatch(part)
        if part.isdigit():
            people = int(part)
        elif part in part4.ARCHITECTURES:
            architecture = part
        elif size:
            layers, heads = int(size.group(1)), int(size.group(2))
        else:
            raise ConfigError(f"config argument {arg!r} is invalid: {part!r} is no N, architecture "
                              f"({', '.join(part4.ARCHITECTURES)}) or size l-h; it must be {USAGE}")
    config.task.people = people
    # capacity.py's rule: a fresh rendering per exposure as far as the task's token pool holds
    config.task.renderings = min(EXPOSURES, POOL_TOKENS // (TOKENS_PER_RENDERING * people))
    if config.task.renderings < 1:
        raise ConfigError(f"config argument {arg!r} is invalid: {people:,} people do not fit the bio task's "
                          f"pool of {POOL_TOKENS:,} tokens (at most {POOL_TOKENS // TOKENS_PER_RENDERING:,})")
    part4.apply_architecture(config.model, architecture)
    config.model.num_layers, config.model.num_heads, config.model.width = layers, heads, 64 * heads
    config.workdir = f"runs/capo_{people}_{architecture}_{layers}-{heads}"
    return config

