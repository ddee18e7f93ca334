"""Shared fixtures: tiny configs that train in seconds on the CPU backend.

The CPU backend is split into 8 devices (before jax is imported) so that sharded layouts can be
checked against one device; tiny configs use one of them unless a test asks for more. XLA compiles
with cheap code generation, and compiled programs are cached on disk for the session (see below).
"""
import atexit
import os
import shutil
import tempfile

# Tests compile many tiny programs and run each a few steps, so compiling is most of their time:
# XLA:CPU's cheaper code generation cuts the suite by about a quarter. Both sides of every
# comparison (resumed vs uninterrupted, sharded vs one device) compile the same way. Flags already
# in XLA_FLAGS win.
_TEST_XLA_FLAGS = ("--xla_force_host_platform_device_count=8", "--xla_backend_optimization_level=0",
                   "--xla_llvm_disable_expensive_passes=true")
_given = os.environ.get("XLA_FLAGS", "")
os.environ["XLA_FLAGS"] = " ".join([_given] + [flag for flag in _TEST_XLA_FLAGS if flag.split("=")[0] not in _given]).strip()

# Many tests (and the scripts some of them start) compile the same tiny programs again; a compilation
# cache on disk for this session turns the repeats into loads (the suite takes ~20% less time). It is
# made fresh per session (unless JAX_COMPILATION_CACHE_DIR is already set), inherited by test workers
# and subprocesses, and removed at the end by the process that made it.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _cache_dir = tempfile.mkdtemp(prefix="lmphys-tests-xla-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache_dir
    atexit.register(shutil.rmtree, _cache_dir, ignore_errors=True)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")

# Scripts and snippets that tests start as subprocesses import this checkout's lmphys, not
# whichever copy `pip install -e` points at.
_CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ["PYTHONPATH"] = os.pathsep.join([_CHECKOUT] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])

import pytest

from lmphys.config import load_config_file

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config(workdir: str, steps: int = 20):
    """The default job shrunk to seconds: 2 layers x 32 wide on cfg_small."""
    config = load_config_file(os.path.join(REPO, "configs", "default.py"))
    config.workdir = workdir
    config.task.batch_size = 4
    config.task.seq_len = 32
    config.task.eval_samples = 8
    config.task.eval_prefix_len = 4
    config.parallel.data = 1
    config.model.num_layers = 2
    config.model.num_heads = 2
    config.model.width = 32
    config.model.max_len = 32
    config.optim.warmup_steps = 2
    config.train.steps = steps
    config.train.log_every_seconds = 1e-6  # a record every step, so tests can read the curve
    config.train.eval_every = 1000
    config.train.checkpoint_every = 1000
    return config


@pytest.fixture(scope="session")
def slurm_cluster():
    """A SLURM cluster to submit to: the one SLURM_CONF names, or the local one of .ci/slurm.sh
    (started if need be). Skips, saying why in one line, where none can be had."""
    from tests import cluster

    reason = cluster.slurm_ready()
    if reason:
        pytest.skip(reason)


@pytest.fixture
def make_tiny_config(tmp_path):
    return lambda steps=20, name="run": tiny_config(str(tmp_path / name), steps)
