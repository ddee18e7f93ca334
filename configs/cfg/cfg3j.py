"""Part 4.1's cfg3j (Lano: 8 levels, strings of ~220-1000 tokens) with Part 1's paper-scale model
(GPT2-12-12, batch 96, 100k steps) and Part 4.1's context of 1536 tokens, for a GPU.

    python scripts/train.py --config=configs/cfg/cfg3j.py              (rotary GPT)
    python scripts/train.py --config=configs/cfg/cfg3j.py:absolute     (or relative, pos, uniform, none)
    python scripts/train.py --config=configs/cfg/cfg3j.py:bert         (BERT-style encoder, masked LM)

The settings live in paper.py beside this file.
"""
import os

import ml_collections

from lmphys.config import load_config_file


def get_config(variant: str = "rope") -> ml_collections.ConfigDict:
    paper = os.path.join(os.path.dirname(__file__), "paper.py")
    return load_config_file(paper, "cfg3j", variant)
