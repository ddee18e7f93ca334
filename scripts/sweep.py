"""Run a sweep: `python scripts/sweep.py --config=configs/sweeps/part1_small.py`.

Each trial trains in <sweep workdir>/trials/<trial id>/ and records result.json; rerunning the same
command skips finished trials and resumes an interrupted one. Then: scripts/report.py --sweep=DIR.
"""
import sys

from absl import app
from ml_collections import config_flags

from lmphys import sweep
from lmphys import cli

_CONFIG = config_flags.DEFINE_config_file("config", None, "Sweep config file.", lock_config=False)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if _CONFIG.value is None:
        raise app.UsageError("--config=configs/sweeps/<name>.py is required")
    cli.quiet_library_logs()
    with cli.user_errors():
        status = sweep.run_sweep(_CONFIG.value)
    sys.exit(0 if all(value == "done" for value in status.values()) else 1)


if __name__ == "__main__":
    app.run(main)
