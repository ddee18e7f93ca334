"""Config errors are caught before compiling, with one sentence naming the field."""
import os
import subprocess
import sys

import pytest

from lmphys import sweep
from lmphys.config import load_config_file
from lmphys.errors import ConfigError
from lmphys.train.run_config import validate
from tests.conftest import REPO


def test_every_shipped_config_and_sweep_trial_is_valid():
    checked = 0
    for root, _, files in os.walk(os.path.join(REPO, "configs")):
        for name in files:
            if not name.endswith(".py"):
                continue
            config = load_config_file(os.path.join(root, name))
            if "grid" in config:  # a sweep: every trial it expands to must be a valid run
                for trial in sweep.expand(config.grid, config.get("cases", ())):
                    validate(trial.config(config.base, config.workdir))
                    checked += 1
            else:
                validate(config)
                checked += 1
    assert checked >= 10


@pytest.mark.parametrize("variant", ["rope", "absolute", "relative", "pos", "uniform", "none", "bert"])
def test_every_part1_variant_is_valid_at_both_scales(variant):
    for name in ("small.py", "cfg3f.py", "cfg3b.py"):
        validate(load_config_file(os.path.join(REPO, "configs", "cfg", name), variant))
    with pytest.raises(ConfigError, match="absolute, rope, .*bert"):
        load_config_file(os.path.join(REPO, "configs", "cfg", "small.py"), "sinusoidal")


@pytest.mark.parametrize(
    "field, value, words",
    [
        ("model.num_heads", 3, ["model.num_heads", "divide model.width"]),
        ("model.position", "sinusoidal", ["model.position", "rope", "relative", "uniform"]),
        ("task.grammar", "cfg9z", ["task.grammar", "cfg9z", "cfg3f"]),
        ("train.steps", -5, ["train.steps", "zero or more"]),
        ("task.seq_len", 4096, ["task.seq_len", "model.max_len"]),
        ("task.objective", "mlm", ["task.objective", "gpt"]),
        ("model.dtype", "float16", ["model.dtype", "bfloat16"]),
        ("optim.schedule", "step", ["optim.schedule", "cosine"]),
        ("model.dropout", 1.5, ["model.dropout", "[0, 1)"]),
    ],
)
def test_bad_values_name_the_field_and_what_is_allowed(field, value, words):
    config = load_config_file(os.path.join(REPO, "configs", "default.py"))
    section, name = field.split(".")
    config[section][name] = value
    with pytest.raises(ConfigError) as error:
        validate(config)
    message = str(error.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_train_script_reports_a_bad_flag_in_one_line_without_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "scripts", "train.py"),
         f"--config.workdir={tmp_path}", "--config.model.num_heads=3"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: model.num_heads = 3")
