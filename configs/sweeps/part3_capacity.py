"""Part 3.3's capacity plot: bits of knowledge against parameters, over model sizes x people.

    python scripts/sweep.py --config=configs/sweeps/part3_capacity.py            (bioD, 1000 exposures, CPU)
    python scripts/sweep.py --config=configs/sweeps/part3_capacity.py:bios,100
    python scripts/report.py --sweep=runs/part3_capacity_biod_1000     (capacity.png: bits vs params)

Each trial trains configs/bio/capacity.py:<world>,<exposures> and then measures its bits of
knowledge (the bit-complexity lower bound from its losses on names and values), also after int8 and
int4 weight quantization. The paper's finding: ~2 bits per parameter at 1000 exposures, ~1 at 100,
int8 keeps it, int4 loses some. At CPU scale (2-layer models 32 or 64 wide, a few hundred people) the sweep takes
about 15 minutes; at 100 exposures such small worlds give too few steps to learn anything.
Each trial reports its ceiling (the bits a perfect model would hold: names at the reachable loss
ln N) beside its bits, and bits per parameter with and without the embedding parameters.
"""
import os

import ml_collections

from lmphys.config import load_config_file


def get_config(arg: str = "biod,1000") -> ml_collections.ConfigDict:
    sweep = ml_collections.ConfigDict()
    sweep.workdir = "runs/part3_capacity_" + arg.replace(",", "_")
    sweep.base = load_config_file(os.path.join(os.path.dirname(__file__), "..", "bio", "capacity.py"), arg)
    sweep.grid = ml_collections.ConfigDict({"model": {"width": (32, 64)}})
    sweep.cases = [{"task": _task_for(sweep.base.task, people)} for people in (200, 400)]
    sweep.analyses = ("capacity",)
    return sweep


def _task_for(base: ml_collections.ConfigDict, people: int) -> dict:
    """The task fields that change with the people: as many junk people per useful one as the base
    has (junk runs), and as many fresh renderings as the base's pool of tokens holds, up to exposures."""
    fields = {"people": people,
              "renderings": min(base.exposures, base.renderings * base.people // people)}
    if base.junk_fraction:
        fields["junk_people"] = round(base.junk_people / base.people * people)
    return fields
