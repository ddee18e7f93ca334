"""Part 3.3, knowledge capacity: how many bits of knowledge a model stores per parameter.

    python scripts/train.py --config=configs/bio/capacity.py:biod,100
    python scripts/train.py --config=configs/bio/capacity.py:bios,1000
    python scripts/train.py --config=configs/bio/capacity.py:bios,100,junk          (7/8 of the rows junk)
    python scripts/train.py --config=configs/bio/capacity.py:bios,100,junk_domain   (junk, and <useful> before useful data)
    python scripts/probe.py --workdir=runs/capacity_biod_100   (bits, bits per parameter, int8 / int4)

The argument is "<world>,<exposures>[,junk|junk_domain]": world bios (Part 3.1's people, ~47.6 bits
each) or biod (bioD(N, K, C, D, L, T), the knobs in task.biod); exposures: how many times each
person's data is seen (the paper's 100 and 1000; it sets train.steps). Every biography is a fresh
rendering (multi5 + permute), as the paper regenerates bioS text per exposure. The capacity sweep
over model sizes x people is configs/sweeps/part3_capacity.py.
"""
import os

import ml_collections

from lmphys.config import load_config_file
from lmphys.errors import ConfigError

JUNK = ("", "junk", "junk_domain")


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
    config.task.seq_len, config.model.max_len = 128, 128
    config.model.num_layers, config.model.num_heads, config.model.width = 2, 2, 64
    config.train.eval_every = 10**9  # capacity is measured after training (sweep analysis / probe.py)
    if junk:
        config.task.junk_fraction = 7 / 8  # the paper's 1:7 useful:junk
        config.task.junk_people = 20 * config.task.people  # each junk person is seen ~1/20 as often
        config.task.domain_token = junk == "junk_domain"
    return config
