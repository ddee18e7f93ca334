"""Part 3.3, knowledge capacity: how many bits of knowledge a model stores per parameter.

    python scripts/train.py --config=configs/bio/capacity.py:biod,100
    python scripts/train.py --config=configs/bio/capacity.py:bios,1000
    python scripts/train.py --config=configs/bio/capacity.py:bios,100,junk          (7/8 of the rows junk)
    python scripts/train.py --config=configs/bio/capacity.py:bios,100,junk_domain   (junk, and <useful> before useful data)
    python scripts/probe.py --workdir=runs/capacity_biod_100   (bits, bits per parameter, int8 / int4)

The argument is "<world>,<exposures>[,junk|junk_domain]": world bios (Part 3.1's people, ~47.6 bits
each) or biod (bioD(N, K, C, D, L, T), the knobs in task.biod); exposures: how many times each
person's data is seen (the paper's 100 and 1000; it sets train.steps, so --config.train.steps is
not used). Each person gets as many renderings as exposures (task.renderings), each with fresh
templates and sentence order (bioD: a fresh attribute order), as the paper draws the text anew for
every exposure; rows are drawn with replacement from that fixed pool, so about 63% of a person's
exposures show a rendering not shown before. The pool must fit 2^26 tokens (bioS: about 70 tokens
with bos and eos per rendering), so renderings = min(exposures, what fits for task.people): 958 for
1000 bioS people at 1000 exposures, all of them at the sweep's 200 and 400 people.

Junk (Part 3.3 Sec. 10): 7/8 of the rows are biographies of other people, each rendered once, and
junk_people = 7 * JUNK_RARITY * people makes each of them seen 1/JUNK_RARITY as often as a useful
person (the paper's junk people are seen 0.05-0.2 times in all against the useful 100, i.e. 1/500 to
1/2000 as often, which needs far more junk people than a CPU holds). A sweep that changes
task.people must change task.junk_people with it (configs/sweeps/part3_capacity.py does).
The capacity sweep over model sizes x people is configs/sweeps/part3_capacity.py.
"""
import os

import ml_collections

from lmphys.config import load_config_file
from lmphys.errors import ConfigError

JUNK = ("", "junk", "junk_domain")
POOL_TOKENS = 2**26  # what the task packs at most (lmphys.worlds.bio.task)
TOKENS_PER_RENDERING = {"bios": 70, "biod": 25}  # a document with its bos and eos (capo templates; bioD's knobs here)
JUNK_FRACTION = 7 / 8  # the paper's 1:7 useful:junk tokens
JUNK_RARITY = 20  # a junk person is seen 1/20 as often as a useful one


def junk_people(people: int) -> int:
    """Junk people that make each one seen 1/JUNK_RARITY as often as each of `people` useful ones:
    junk rows are JUNK_FRACTION / (1 - JUNK_FRACTION) = 7 times the useful rows, over 7 * 20 times
    the people (their documents are about as long)."""
    return round(JUNK_FRACTION / (1 - JUNK_FRACTION) * JUNK_RARITY * people)


def get_config(arg: str = "biod,100") -> ml_collections.ConfigDict:
    world, _, rest = arg.partition(",")
    exposures, _, junk = rest.partition(",")
    if world not in ("bios", "biod") or not exposures.isdigit() or junk not in JUNK:
        raise ConfigError(f"config argument {arg!r} is invalid: it must be <bios|biod>,<exposures>[,junk|junk_domain]")
    config = load_config_file(os.path.join(os.path.dirname(__file__), "small.py"), "pretrain,multi5_permute")
    config.workdir = f"runs/capacity_{world}_{exposures}" + (f"_{junk}" if junk else "")
    config.task.world = world
    config.task.exposures = int(exposures)
    config.task.people = 1000
    # fresh text per exposure (see above), as many as the pool holds for these people
    config.task.renderings = min(int(exposures), POOL_TOKENS // (TOKENS_PER_RENDERING[world] * config.task.people))
    config.task.seq_len, config.model.max_len = 128, 128
    config.model.num_layers, config.model.num_heads, config.model.width = 2, 2, 64
    config.train.eval_every = 10**9  # capacity is measured after training (sweep analysis / probe.py)
    if junk:
        config.task.junk_fraction = JUNK_FRACTION
        config.task.junk_people = junk_people(config.task.people)
        config.task.domain_token = junk == "junk_domain"
    return config
