"""Run a sweep: `python scripts/sweep.py --config=configs/sweeps/part1_small.py`.

Each trial trains in <sweep workdir>/trials/<trial id>/ and records result.json; rerunning the same
command skips finished trials and resumes an interrupted one. Then: scripts/report.py --sweep=DIR.
"""
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from lmphys import sweep
from lmphys.errors import LmphysError

_CONFIG = config_flags.DEFINE_config_file("config", None, "Sweep config file.", lock_config=False)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if _CONFIG.value is None:
        raise app.UsageError("--config=configs/sweeps/<name>.py is required")
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    try:
        status = sweep.run_sweep(_CONFIG.value)
    except LmphysError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    sys.exit(0 if all(value == "done" for value in status.values()) else 1)


if __name__ == "__main__":
    app.run(main)
