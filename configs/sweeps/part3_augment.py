"""Part 3.1's augmentation table: pretrain on biographies, then QA fine-tune (full or LoRA), or mixed
training, for each data augmentation; QA accuracy on the people whose QA was never trained is the
knowledge *extraction* the paper measures. The bert stage trains the paper's encoder comparison
(whole-word masked LM on the same biographies) and P/Q-probes each trained encoder, with the value
cloze that says whether it stored the values at all (F11: the paper finds such encoders fail to
attach most attributes to the name, augmented or not); probe the
pretrain stage's GPTs beside it with scripts/probe.py.

    python scripts/sweep.py --config=configs/sweeps/part3_augment.py:pretrain     (CPU scale)
    python scripts/sweep.py --config=configs/sweeps/part3_augment.py:finetune     (after pretrain)
    python scripts/sweep.py --config=configs/sweeps/part3_augment.py:lora         (after pretrain)
    python scripts/sweep.py --config=configs/sweeps/part3_augment.py:mixed
    python scripts/sweep.py --config=configs/sweeps/part3_augment.py:bert         (encoders, probed)
    python scripts/report.py --sweep=runs/part3_augment_small_finetune
Append ",paper" (e.g. `:pretrain,paper`) for the paper's scale (configs/bio/paper.py, GPU).

The fine-tune stages start each trial from the pretrained trial of the same augmentation
(init_from = runs/part3_augment_<scale>_pretrain/trials/augmentation=<name>).
"""
import os

import ml_collections

from lmphys.config import load_config_file
from lmphys.errors import ConfigError

STAGES = ("pretrain", "finetune", "lora", "mixed", "bert")
# The CPU table covers the rows that carry the paper's story; the paper scale runs all of them.
SMALL_AUGMENTATIONS = ("single", "multi5_permute")
PAPER_AUGMENTATIONS = ("single", "fullname", "permute1", "permute5", "multi2", "multi5", "multi5_permute",
                       "multi5_fullname_permute")


def get_config(arg: str = "pretrain") -> ml_collections.ConfigDict:
    stage, _, scale = arg.partition(",")
    scale = scale or "small"
    if stage not in STAGES or scale not in ("small", "paper"):
        raise ConfigError(f"config argument {arg!r} is invalid: it must be <stage>[,paper] with stage one of {', '.join(STAGES)}")
    here = os.path.dirname(__file__)
    mode = "finetune" if stage == "lora" else stage
    sweep = ml_collections.ConfigDict()
    sweep.workdir = f"runs/part3_augment_{scale}_{stage}"
    sweep.base = load_config_file(os.path.join(here, "..", "bio", f"{scale}.py"), f"{mode},single")
    augmentations = SMALL_AUGMENTATIONS if scale == "small" else PAPER_AUGMENTATIONS
    if stage in ("finetune", "lora"):
        pretrained = os.path.abspath(f"runs/part3_augment_{scale}_pretrain/trials")
        sweep.grid = ml_collections.ConfigDict(
            {"init_from": [os.path.join(pretrained, f"augmentation={name}") for name in augmentations]})
        if stage == "lora":
            sweep.base.lora.embedding_rank = 16  # the paper's LoRA: low rank on embeddings and query/value
            sweep.base.lora.attention_rank = 8
            sweep.base.optim.learning_rate = 1e-3
    else:
        # A tuple, so some augmentations run alone: --config.grid.task.augmentation="('multi5_permute',)".
        sweep.grid = ml_collections.ConfigDict({"task": {"augmentation": tuple(augmentations)}})
    # The encoder has no QA to score: what it stored is read by the probes (lmphys.worlds.bio.probes).
    sweep.analyses = ("knowledge_probes",) if stage == "bert" else ()
    return sweep
