"""Probe a finished CFG run for its grammar's structure: `python scripts/probe.py --workdir=runs/default`.

Linear probes on every layer's hidden states for each token's non-terminal ancestors and subtree
boundaries, beside the same architecture at random init, and (decoders) attention from each
boundary to the previous one. Prints one table and writes <workdir>/structure.json.
"""
import json
import os

from absl import app, flags

from lmphys import cfg_structure
from lmphys import cli
from lmphys.train import loop

_WORKDIR = flags.DEFINE_string("workdir", None, "A finished run's workdir.", required=True)
_STRINGS = flags.DEFINE_integer("num_strings", 256, "Held-out strings to probe on.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    cli.quiet_library_logs()
    with cli.user_errors():
        run = loop.load_trained(_WORKDIR.value)
        result = cfg_structure.analyze_run(run.config, run.params, num_strings=_STRINGS.value)
    print(f"{_WORKDIR.value} at step {run.step}:\n")
    print("| measure | trained | random init |\n|---|---|---|")
    summary = result["summary"]
    for name, value in summary.items():
        if not name.endswith("_random_init"):
            print(f"| {name} | {value:.3f} | {summary[name + '_random_init']:.3f} |")
    path = os.path.join(_WORKDIR.value, "structure.json")
    with open(path, "w") as handle:
        json.dump(result, handle, indent=1)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    app.run(main)
