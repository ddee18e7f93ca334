"""Part 3.2, knowledge manipulation: partial retrieval (birth year), classification (birth month
mod 2, 6, 12), comparison (who was born earlier) and inverse search (who was born on date X in
city Y), trained on the training half's questions and tested on the held-out half's, with or
without chain of thought (the answer first states the attribute it needs).

    python scripts/train.py --config=configs/bio/manipulation.py:classify_month_2,cot
    python scripts/train.py --config=configs/bio/manipulation.py:inverse_birth,plain
    python scripts/train.py --config=configs/bio/manipulation.py:compare_birth,cot,paper   (GPU)
    python scripts/train.py --config=configs/bio/manipulation.py:inverse_birth,plain,reverse

One run trains on every person's multi5+permute biographies (so their knowledge is extractable) mixed
with the manipulation questions of the training half (half the rows). To fine-tune a pretrained
model instead, add --config.init_from=<its workdir> --config.task.qa_fraction=1.
A trailing ",reverse" adds each biography's reversed twin (task.reverse: values before the name),
Part 3.2's condition under which inverse search can work; the forward biographies keep their
sightings and the twins get as many, so the run is twice as long. configs/sweeps/part3_manipulation.py runs
every kind with and without CoT.
"""
import os

import ml_collections

from lmphys.config import load_config_file
from lmphys.errors import ConfigError
from lmphys.worlds.bio.manipulation import KINDS


def get_config(arg: str = "classify_month_2,cot") -> ml_collections.ConfigDict:
    kind, _, rest = arg.partition(",")
    style, _, rest = rest.partition(",")
    options = [option for option in rest.split(",") if option]
    style = style or "cot"
    scales = [option for option in options if option in ("small", "paper")]
    reverse = "reverse" in options
    if (kind not in KINDS or style not in ("cot", "plain") or len(scales) > 1
            or len(options) != len(scales) + reverse):
        raise ConfigError(f"config argument {arg!r} is invalid: it must be <kind>,<cot|plain>[,paper][,reverse] "
                          f"with kind one of {', '.join(KINDS)}")
    scale = scales[0] if scales else "small"
    config = load_config_file(os.path.join(os.path.dirname(__file__), f"{scale}.py"), "mixed,multi5_permute")
    config.workdir = f"runs/bio_{scale}_{kind}_{style}" + ("_reverse" if reverse else "")
    config.task.reverse = reverse
    config.task.qa_kind = kind
    config.task.qa_cot = style == "cot"
    config.task.qa_fraction = 0.5
    if scale == "small":
        config.task.exposures = 100  # with reverse the twins come on top: twice the steps
    elif reverse:  # as at small scale, the forward texts keep their sightings and the twins add as many
        config.train.steps *= 2
    return config
