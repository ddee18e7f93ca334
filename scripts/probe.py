"""Analyse a finished run: `python scripts/probe.py --workdir=runs/default`.

CFG runs (Part 1): linear probes on every layer's hidden states for each token's non-terminal
ancestors and subtree boundaries, beside the same architecture at random init, and (decoders)
attention from each boundary to the previous one; writes <workdir>/structure.json.

Knowledge runs (Part 3): P-probing (each attribute from the hidden state just before each
attribute's value in the person's biography) and Q-probing (from the name alone), trained vs random
init; and for decoders the capacity: bits of knowledge held (the bit-complexity lower bound from
the losses on names and values) beside the reachable ceiling, per parameter with and without the
embedding parameters, also after int8 / int4 quantization; writes
<workdir>/knowledge.json. `--analyses=capacity` or `=probes` runs one of them.

iGSM runs (Part 2.1): V-probing of nece, dep, known, value, can_next and nece_next on every layer,
trained vs random init, on `--num_problems` fresh problems; writes <workdir>/reasoning.json.

It only reads the run (a corrupt latest checkpoint is skipped for the newest one that restores,
with a note). Exit status 0, or 2 with `error: <sentence>` for a bad flag or a workdir that holds
no trained run (74 if the result cannot be written).
"""
import json
import os
import time

from absl import app, flags

from lmphys import cli
from lmphys.train import runs, workdir

_WORKDIR = flags.DEFINE_string("workdir", None, "A finished run's workdir.", required=True)
_STRINGS = flags.DEFINE_integer("num_strings", 256, "CFG runs: held-out strings to probe on.", lower_bound=1)
_ANALYSES = flags.DEFINE_list("analyses", ["probes", "capacity"], "Knowledge runs: probes and/or capacity.")
_PROBLEMS = flags.DEFINE_integer("num_problems", 200, "iGSM runs: problems to V-probe on.", lower_bound=1)
_KNOWLEDGE_ANALYSES = ("probes", "capacity")
flags.register_validator("analyses", lambda names: bool(names) and set(names) <= set(_KNOWLEDGE_ANALYSES),
                         message=f"it must name one or both of {', '.join(_KNOWLEDGE_ANALYSES)}")


def _timed(what: str, analysis, *args, **kwargs):
    """analysis(*args, **kwargs) between two progress lines (each takes a minute or more on a CPU)."""
    print(f"{what} ...", flush=True)
    started = time.perf_counter()
    result = analysis(*args, **kwargs)
    print(f"{what}: done in {time.perf_counter() - started:.0f} s\n", flush=True)
    return result


def _structure(run) -> dict:
    from lmphys.worlds.cfg import structure

    result = _timed("structure probes (trained and random init)", structure.analyze_run, run.task, run.graphdef,
                    run.params, num_strings=_STRINGS.value)
    print("| measure | trained | random init |\n|---|---|---|")
    summary = result["summary"]
    for name, value in summary.items():
        if not name.endswith("_random_init"):
            print(f"| {name} | {value:.3f} | {summary[name + '_random_init']:.3f} |")
    return result


def _knowledge(run) -> dict:
    from lmphys.worlds.bio import capacity, probes

    result = {}
    if "probes" in _ANALYSES.value:
        result["probes"] = _timed("P- and Q-probes (trained and random init)", probes.analyze_run, run.task,
                                  run.graphdef, run.params)
        print("| probe | trained | random init |\n|---|---|---|")
        summary = result["probes"]["summary"]
        for name, value in summary.items():
            if not name.endswith("_random_init"):
                baseline = summary.get(name + "_random_init")  # the cloze has no random-init twin
                print(f"| {name} | {value:.3f} | {'-' if baseline is None else f'{baseline:.3f}'} |")
    if "capacity" in _ANALYSES.value and run.config.model.kind == "gpt":
        result["capacity"] = bits = _timed("capacity (fp32, int8, int4 weights)", capacity.analyze_run, run.task,
                                           run.graphdef, run.params)
        print(f"{bits['params']:,} parameters, {bits['params_without_embedding']:,} without the embedding ones; "
              f"a perfect model would hold {bits['ceiling']:,.0f} bits (the reachable ceiling: names at loss ln N)\n")
        print("| weights | bits of knowledge | of the ceiling | bits per parameter | without embeddings |\n|---|---|---|---|---|")
        for label in ("fp32", "int8", "int4"):
            print(f"| {label} | {bits[label]['total']:,.0f} | {bits[label]['total'] / bits['ceiling']:.3f} | "
                  f"{bits['bits_per_param_' + label]:.4f} | {bits['bits_per_param_' + label + '_without_embedding']:.4f} |")
    return result


def _reasoning(run) -> dict:
    from lmphys.worlds.igsm import vprobe

    result = _timed("V-probes (trained and random init)", vprobe.analyze_run, run.task, run.graphdef, run.params,
                    num_problems=_PROBLEMS.value)
    trained, random_init = result["trained"], result["random_init"]
    print(f"{trained['num_problems']} problems ({trained['num_skipped']} too long for model.max_len)\n")
    print("| task | majority | trained, per layer | random init, last layer |\n|---|---|---|---|")
    for task, scores in trained["tasks"].items():
        layers = " ".join(f"{accuracy:.3f}" for accuracy in scores["accuracy"])
        print(f"| {task} | {scores['majority']:.3f} | {layers} | {random_init['tasks'][task]['accuracy'][-1]:.3f} |")
    return result


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    run = runs.load_trained(_WORKDIR.value)
    print(f"{_WORKDIR.value} at step {run.step}:\n")
    analyses = {"bio": (_knowledge, "knowledge.json"), "igsm": (_reasoning, "reasoning.json")}
    analyse, filename = analyses.get(run.config.task.name, (_structure, "structure.json"))
    result = analyse(run)
    path = os.path.join(_WORKDIR.value, filename)
    workdir.write_atomic(path, json.dumps(result, indent=1))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    cli.run(main)
