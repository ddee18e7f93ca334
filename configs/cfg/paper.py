"""Part 1 at paper scale on a GPU: GPT2-12-12 (768 wide) on a shipped grammar, context 512.

    python scripts/train.py --config=configs/cfg/cfg3f.py            (rotary GPT)
    python scripts/train.py --config=configs/cfg/cfg3f.py:relative   (absolute relative pos uniform none)
    python scripts/train.py --config=configs/cfg/cfg3f.py:bert       (BERT-style encoder, masked LM)

This file is the shared base; cfg3b.py, cfg3f.py, cfg3j.py and cfg3k.py pick the grammar.

Context: 512 tokens, as Part 1 uses for cfg3f, except for cfg3j and cfg3k (Part 4.1's 8-level
grammars, strings of about 220-1000 tokens: half are longer than 512), which get Part 4.1's 1536
so that every string fits (the longest of 200k samples had 1009 tokens). Every evaluation reports
`held_out_fit_fraction` and `gen_fit_fraction`, the shares of held-out and generated strings that fit.

Settings (FACTS.md, Parts 1 and 4.1): batch 96 x 512 tokens, 100k steps (4.9B tokens), AdamW
(0.9, 0.98), eps 1e-6, weight decay 0.1, no warmup, linear decay to 0; the paper sweeps the learning
rate over {2e-4, 3e-4, 5e-4, 1e-3}. Completion accuracy uses the first 50 tokens ("cut 50").
"""
import os

import ml_collections

from lmphys.config import load_config_file
from lmphys.worlds.cfg import apply_variant


# Part 4.1 (App. A.5): "longer datasets cfg3j and cfg3k require extended context lengths of 1536".
CONTEXT = {"cfg3j": 1536, "cfg3k": 1536}


def get_config(grammar: str = "cfg3f", variant: str = "rope") -> ml_collections.ConfigDict:
    config = load_config_file(os.path.join(os.path.dirname(__file__), "..", "default.py"))
    config.workdir = f"runs/{grammar}_{variant}_12x768"
    config.task.grammar = grammar
    config.task.batch_size = 96
    config.task.seq_len = CONTEXT.get(grammar, 512)
    config.task.eval_samples = 1024
    config.task.eval_prefix_len = 50

    config.model.num_layers = 12
    config.model.num_heads = 12
    config.model.width = 768
    config.model.max_len = config.task.seq_len

    config.optim.learning_rate = 3e-4
    config.optim.warmup_steps = 0
    config.optim.schedule = "linear"
    config.optim.final_lr_fraction = 0.0

    config.train.steps = 100_000
    config.train.log_every_seconds = 30.0
    config.train.eval_every = 5_000
    config.train.checkpoint_every = 5_000
    config.train.keep_checkpoints = 3
    return apply_variant(config, variant)
