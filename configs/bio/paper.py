"""Part 3.1 at the paper's scale (GPU): GPT2-12-12 with rotary positions on a quarter of each
head's dims, 100k people, context 512, batch 96, AdamW (0.9, 0.98) eps 1e-6, wd 0.1, lr 1e-3 with
1k warmup and cosine decay to 1e-4, 80k steps (FACTS.md). Same "<mode>,<augmentation>" argument
as configs/bio/small.py:

    python scripts/train.py --config=configs/bio/paper.py:pretrain,multi5_permute
    python scripts/train.py --config=configs/bio/paper.py:mixed,single
    python scripts/train.py --config=configs/bio/paper.py:finetune,single --config.init_from=runs/bio_paper_pretrain_single

The fine-tuning optimizer settings are not in the paper text we have ("?" in FACTS.md): lr 3e-4,
no warmup, wd 0.01, 10k steps here.
"""
import os

import ml_collections

from lmphys.config import load_config_file


def get_config(arg: str = "pretrain,single") -> ml_collections.ConfigDict:
    config = load_config_file(os.path.join(os.path.dirname(__file__), "small.py"), arg)
    mode = arg.partition(",")[0]
    config.workdir = config.workdir.replace("bio_small_", "bio_paper_")
    config.task.people = 100_000
    config.task.eval_people = 2000
    config.task.batch_size, config.task.seq_len = 96, 512
    config.task.exposures = 0  # the paper counts steps
    config.model.num_layers, config.model.num_heads, config.model.width, config.model.max_len = 12, 12, 768, 512
    config.model.rope_fraction = 0.25
    config.train.steps = {"pretrain": 80_000, "mixed": 80_000, "bert": 80_000, "finetune": 10_000}[mode]
    config.train.eval_every, config.train.checkpoint_every = 10_000, 2_000
    if mode != "finetune":
        config.optim.learning_rate, config.optim.warmup_steps, config.optim.weight_decay = 1e-3, 1000, 0.1
        config.optim.final_lr_fraction = 0.1
    return config
