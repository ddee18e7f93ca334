"""Part 3.1 at CPU scale: a 4-layer, 128-wide rotary GPT memorises 300 people's biographies.

    python scripts/train.py --config=configs/bio/small.py:pretrain,multi5_permute
    python scripts/train.py --config=configs/bio/small.py:mixed,single
    python scripts/train.py --config=configs/bio/small.py:finetune,single --config.init_from=runs/bio_small_pretrain_single

The argument is "<mode>,<augmentation>": mode pretrain (biographies only), mixed (biographies +
QA of the training half, 0.8 of the rows), finetune (QA of the training half only, from the
pretrained run in init_from; add --config.lora.embedding_rank=... --config.lora.attention_rank=...
for LoRA), bert (a BERT-style encoder pretrained with whole-word masked LM on the biographies:
every token is a word, so token masking is whole-word masking; compare it by probing); augmentation one of lmphys.worlds.bio.AUGMENTATIONS (single, fullname, permute1,
permute5, multi2, multi5, multi5_permute, multi5_fullname_permute).
configs/sweeps/part3_augment.py runs the whole augmentation table. configs/bio/paper.py is the
paper-scale version.
"""
import os

import ml_collections

from lmphys.config import load_config_file
from lmphys.errors import ConfigError
from lmphys.worlds import bio

MODES = ("pretrain", "mixed", "finetune", "bert")


def get_config(arg: str = "pretrain,single") -> ml_collections.ConfigDict:
    mode, _, augmentation = arg.partition(",")
    if mode not in MODES:
        raise ConfigError(f"config argument {arg!r} is invalid: it must be <mode>,<augmentation> with mode one of "
                          f"{', '.join(MODES)}")
    config = load_config_file(os.path.join(os.path.dirname(__file__), "..", "default.py"))
    config.workdir = f"runs/bio_small_{mode}_{augmentation or 'single'}"
    config.task = bio.default_config()
    config.task.augmentation = augmentation or "single"
    config.task.people = 300
    config.task.eval_people = 150  # all of each half
    config.task.batch_size = 32
    config.task.seq_len = 128
    config.task.qa_fraction = {"pretrain": 0.0, "mixed": 0.8, "finetune": 1.0, "bert": 0.0}[mode]
    config.model.num_layers, config.model.num_heads, config.model.width = 4, 4, 128
    config.model.max_len = 128
    config.model.rope_fraction = 0.25  # Part 3.1: rotary on a quarter of each head's dims
    config.optim.learning_rate = 1e-3
    config.optim.warmup_steps = 100
    config.optim.final_lr_fraction = 0.1
    config.optim.weight_decay = 0.1
    # Each person's biographies are seen `exposures` times (this sets train.steps); fine-tuning
    # runs a fixed number of steps on the QA rows alone.
    config.task.exposures = {"pretrain": 200, "mixed": 50, "finetune": 0, "bert": 200}[mode]
    config.train.steps = 400
    config.train.eval_every = 500
    config.train.checkpoint_every = 500
    if mode == "bert":
        config.model.kind, config.task.objective = "bert", "mlm"
    if mode == "finetune":
        config.optim.warmup_steps = 0
        config.optim.learning_rate = 3e-4
        config.optim.weight_decay = 0.01
    return config
