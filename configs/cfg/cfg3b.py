"""Part 1 on cfg3b at paper scale (GPT2-12-12, context 512, batch 96, 100k steps) for a GPU.

    python scripts/train.py --config=configs/cfg/cfg3b.py              (rotary GPT)
    python scripts/train.py --config=configs/cfg/cfg3b.py:absolute     (or relative, pos, uniform, none)
    python scripts/train.py --config=configs/cfg/cfg3b.py:bert         (BERT-style encoder, masked LM)

The settings live in paper.py beside this file.
"""
import os

import ml_collections

from lmphys.config import load_config_file


def get_config(variant: str = "rope") -> ml_collections.ConfigDict:
    paper = os.path.join(os.path.dirname(__file__), "paper.py")
    return load_config_file(paper, "cfg3b", variant)
