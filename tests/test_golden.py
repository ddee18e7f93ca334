"""Golden data: the first training batch of each world's default CPU config and of one paper
config per world, made the way the training step makes it and hashed. A refactor that changes what
a model is trained on fails here; a deliberate change of a world updates the hash in the same
commit and says why.
"""
import hashlib
import os

import jax
import numpy as np
import pytest

from lmphys import config as config_lib
from lmphys.train import host_data, run_config, runs, step as step_lib

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "configs")

# (config file, argument) -> sha256 of the first batch's (inputs, targets, loss_mask), first 16 hex digits.
GOLDEN = {
    ("default.py", None): "95849a83bf4fbf8b",
    ("cfg/small.py", "bert"): "701f198fdb6a5e79",
    ("cfg/cfg3f.py", None): "74da5c753b85de15",
    ("igsm/small.py", None): "25e3edb120434423",
    ("igsm/paper.py", "med"): "db0d77f6b3f65eb8",
    ("bio/small.py", "pretrain,multi5_permute"): "4bb5b21d916a2d98",
    ("bio/paper.py", "mixed,single"): "1ef84032146e8538",
    ("depo/small.py", None): "66b2e5ea1616de47",
    ("depo/small.py", "depo2"): "4113fe33e429f050",
    ("brevo/small.py", None): "61b1b02f2681214e",
    ("brevo/small.py", "brevo2"): "860c5acbff2ed8e1",
    ("mano/small.py", None): "c5c328a952f46200",
}


def first_batch(config) -> tuple[np.ndarray, ...]:
    """Batch 0 of the run's training stream: its host rows, or the rows the step makes on device."""
    task = runs.build_task(config)
    if hasattr(task, "host_batch"):
        batch = host_data.checked_rows(task, host_data.data_seed(config), 0)
    else:
        data = getattr(task, "data", None)
        make = jax.jit(lambda key, data: step_lib.batch_at_step(task.batch, key, 0, data))
        batch = make(runs.run_keys(config)["data"], data)
    return tuple(np.asarray(array) for array in batch)


def digest(arrays: tuple[np.ndarray, ...]) -> str:
    hasher = hashlib.sha256()
    for array in arrays:
        hasher.update(f"{array.dtype}{array.shape}".encode())
        hasher.update(np.ascontiguousarray(array).tobytes())
    return hasher.hexdigest()[:16]


@pytest.mark.parametrize("path,argument", list(GOLDEN))
def test_first_training_batch_is_unchanged(path, argument):
    config = config_lib.load_config_file(os.path.join(CONFIGS, path), *([argument] if argument else []))
    run_config.validate(config)
    arrays = first_batch(config)
    assert arrays[0].shape == (config.task.batch_size, config.task.seq_len)
    assert digest(arrays) == GOLDEN[(path, argument)], f"the first batch of {path}:{argument} changed"
