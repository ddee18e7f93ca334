"""Train one model: `python scripts/train.py [--config=configs/....py] [--config.field=value ...]`.

With no flags it runs the built-in default (configs/default.py): a small rotary GPT on the small
layered grammar cfg_small, a few minutes on CPU. Rerunning the same command resumes the run.
It uses every device it finds (data parallel; see config.parallel for FSDP and multi-host jobs).

Exit status: 0 the run is complete; 75 it was stopped (SIGTERM, Ctrl-C) after saving a
checkpoint, so rerun the same command to resume; 1 it diverged; 2 a user mistake (a bad config
value or file, a workdir in use by another run); 74 a checkpoint or metric could not be written
(disk full, no permission). Every error is one line, `error: <sentence>`.
"""
import os

from absl import app
from ml_collections import config_flags

from lmphys import cli, parallel
from lmphys.errors import EXIT_STOPPED
from lmphys.train import loop

_DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs", "default.py")
_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file (default: configs/default.py).")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    parallel.initialize_distributed(_CONFIG.value.parallel)
    summary = loop.run(_CONFIG.value)
    if parallel.is_primary():  # one summary per job
        for line in summary.lines():
            print(line)
    if summary.stopped_early:
        print(f"stopped before the end, at step {summary.steps}: rerun the same command to resume "
              f"(exit status {EXIT_STOPPED})")
        return EXIT_STOPPED
    return 0


if __name__ == "__main__":
    cli.run(main, config_flag="config", default_config=os.path.normpath(_DEFAULT_CONFIG))
