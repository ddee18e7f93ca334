"""Train one model: `python scripts/train.py [--config=configs/....py] [--config.field=value ...]`.

With no flags it runs the built-in default (configs/default.py): a small rotary GPT on the small
layered grammar cfg_small, a few minutes on CPU. Rerunning the same command resumes the run.
It uses every device it finds (data parallel; see config.parallel for FSDP and multi-host jobs).
"""
import os

from absl import app
from ml_collections import config_flags

from lmphys import cli, parallel
from lmphys.train import loop

_DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs", "default.py")
_CONFIG = config_flags.DEFINE_config_file("config", os.path.normpath(_DEFAULT_CONFIG), "Experiment config file.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    cli.quiet_library_logs()
    with cli.user_errors():
        parallel.initialize_distributed(_CONFIG.value.parallel)
        summary = loop.run(_CONFIG.value)
    if parallel.is_primary():  # one summary per job
        for line in summary.lines():
            print(line)


if __name__ == "__main__":
    app.run(main)
