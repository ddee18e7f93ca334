"""The commands the docs show work as written: every `python scripts/<name>.py ...` in README.md
and docs/ names a script that exists and flags it defines; every `--config=<file>[:<argument>]`
names a config file that exists, and with its argument and its `--config.<field>=<value>`
overrides the config validates (a sweep config: every one of its trials). Placeholders such as
`<run>` or `<mode>` are checked for the file only."""
import ast
import glob
import os
import re
import shlex

import ml_collections
import pytest

from lmphys import sweep
from lmphys.errors import LmphysError
from lmphys.config import load_config_file
from lmphys.train.run_config import validate

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = [os.path.join(REPO, "README.md")] + sorted(glob.glob(os.path.join(REPO, "docs", "*.md")))
# A command runs until the end of its code span, table cell, line, comment or shell operator.
# A double-quoted value is one piece (tried first, so its parentheses do not end the command).
COMMAND = re.compile(r"python (scripts/\w+\.py)((?:\"[^\"\n]*\"|[^`|\n#&;)])*)")
ABSL_FLAGS = {"help", "helpfull", "verbosity", "v", "logtostderr", "alsologtostderr", "flagfile"}
PLACEHOLDER = re.compile(r"[<>\[\]]")


def commands() -> list[tuple[str, str, str]]:
    """(doc file, script, arguments) of every command in the docs."""
    found = []
    for path in DOCS:
        for match in COMMAND.finditer(open(path).read()):
            found.append((os.path.relpath(path, REPO), match.group(1), match.group(2).strip()))
    return found


def defined_flags(script: str) -> set[str]:
    """The flags a script defines (absl DEFINE_* and config_flags calls, read from its source)."""
    names = set(ABSL_FLAGS)
    for node in ast.walk(ast.parse(open(os.path.join(REPO, script)).read())):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "").startswith("DEFINE") and node.args:
            if isinstance(node.args[0], ast.Constant):
                names.add(node.args[0].value)
    return names


def parsed(arguments: str) -> list[tuple[str, str]]:
    """[(flag name, value)] of `--name=value` / `--name` arguments."""
    out = []
    for word in shlex.split(arguments):
        if word.startswith("--"):
            name, _, value = word[2:].partition("=")
            out.append((name, value))
    return out


def with_override(config: ml_collections.ConfigDict, field: str, text: str, where: str) -> None:
    """Set a dotted field as absl's config flags do: the value is parsed to the field's type."""
    *parents, leaf = field.split(".")
    node = config
    for part in parents:
        assert part in node, f"{where}: --config.{field}: the config has no field {part!r}"
        node = node[part]
    assert leaf in node, f"{where}: --config.{field}: the config has no field {leaf!r}"
    if leaf == "init_from":  # names a run made by an earlier command
        return
    current = node[leaf]
    if isinstance(current, bool):
        value = {"true": True, "false": False}[text.lower()]
    elif isinstance(current, (int, float, tuple)):  # absl reads a tuple as a Python literal too
        value = ast.literal_eval(text)
    else:
        value = text
    node[leaf] = value


def validate_after_earlier_commands(config: ml_collections.ConfigDict, made_runs: str) -> None:
    """validate(config), where a run that init_from names was made by an earlier command: it is
    stood in for by a workdir with a config.json."""
    if config.get("init_from"):
        config = config.copy_and_resolve_references()
        os.makedirs(made_runs, exist_ok=True)
        open(os.path.join(made_runs, "config.json"), "w").close()
        config.init_from = made_runs
    validate(config)


def checked_config(path: str, argument: str | None, overrides: list[tuple[str, str]], where: str,
                   made_runs: str) -> None:
    config = load_config_file(os.path.join(REPO, path), *([argument] if argument else []))
    for field, text in overrides:
        with_override(config, field, text, where)
    if "grid" in config and "base" in config:  # a sweep: every trial it would run
        trials = sweep.expand(config.grid, config.get("cases", ()))
        assert trials, f"{where}: the sweep has no trials"
        for trial in trials:
            validate_after_earlier_commands(trial.config(config.base, config.workdir), made_runs)
    else:
        validate_after_earlier_commands(config, made_runs)


CASES = commands()


def test_the_docs_show_commands():
    assert len(CASES) > 30 and {script for _, script, _ in CASES} >= {
        "scripts/train.py", "scripts/sweep.py", "scripts/report.py", "scripts/probe.py", "scripts/generate.py",
        "scripts/bench.py"}


def check_command(where: str, script: str, arguments: str, made_runs: str) -> None:
    if arguments.count('"') % 2:  # the command ends inside a quoted shell word (sbatch --wrap "...")
        arguments = arguments.rstrip('"')
    assert os.path.isfile(os.path.join(REPO, script)), f"{where}: no such script"
    flags = parsed(arguments)
    known = defined_flags(script)
    for name, _ in flags:
        assert name.split(".")[0] in known, f"{where}: {script} has no flag --{name}"
    config_files = [value for name, value in flags if name == "config"]
    overrides = [(name.removeprefix("config."), value) for name, value in flags if name.startswith("config.")]
    for value in config_files:
        path, _, argument = value.partition(":")
        assert os.path.isfile(os.path.join(REPO, path)), f"{where}: no config file {path}"
        if not PLACEHOLDER.search(value) and not any(PLACEHOLDER.search(text) for _, text in overrides):
            checked_config(path, argument or None, overrides, where, made_runs)
    if script == "scripts/train.py" and not config_files and overrides:
        checked_config("configs/default.py", None, overrides, where, made_runs)


@pytest.mark.parametrize("doc,script,arguments", CASES, ids=[f"{d}:{s} {a}"[:120] for d, s, a in CASES])
def test_a_documented_command_names_what_exists_and_validates(doc, script, arguments, tmp_path):
    check_command(f"{doc}: python {script} {arguments}", script, arguments, str(tmp_path / "earlier_run"))


@pytest.mark.parametrize("script,arguments", [
    ("scripts/tran.py", "--config=configs/cfg/small.py"),  # no such script
    ("scripts/train.py", "--config=configs/cfg/smal.py"),  # no such config file
    ("scripts/train.py", "--config=configs/cfg/small.py:relatve"),  # an argument the config rejects
    ("scripts/train.py", "--config=configs/cfg/small.py --config.model.num_layerz=3"),  # no such field
    ("scripts/train.py", "--config=configs/cfg/small.py --config.model.num_heads=3"),  # an invalid value
    ("scripts/sweep.py", "--config=configs/sweeps/part2_retry.py:big"),  # a sweep argument it rejects
    ("scripts/probe.py", "--workdir=runs/x --num_string=5"),  # no such flag
])
def test_a_wrong_command_is_caught(script, arguments, tmp_path):
    with pytest.raises((AssertionError, LmphysError)):
        check_command("test", script, arguments, str(tmp_path / "earlier_run"))
