"""Checkpoints of the training state with orbax: async saves, keep the last N, resume the latest.

Orbax writes each step into a temporary directory and renames it when complete, so a crash during
a save leaves the previous checkpoint intact; `latest_step` only sees finished ones.
"""
from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp

from lmphys.errors import LmphysError


class CheckpointError(LmphysError):
    """A checkpoint in the workdir does not fit the configured run."""


class Checkpointer:
    """Saves and restores the pytree train state under `<workdir>/checkpoints/<step>`."""

    def __init__(self, workdir: str, keep: int):
        self.directory = os.path.join(os.path.abspath(workdir), "checkpoints")
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, step: int, state: Any) -> None:
        """Start an async save of `state` at `step` (no-op if that step is already saved)."""
        if step in self._manager.all_steps():
            return
        self._manager.save(step, args=ocp.args.StandardSave(state))

    def restore(self, step: int, like: Any) -> Any:
        """Restore the state saved at `step` with the structure, shapes and dtypes of `like`."""
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        try:
            return self._manager.restore(step, args=ocp.args.StandardRestore(abstract))
        except (ValueError, KeyError, TypeError) as error:
            raise CheckpointError(
                f"the checkpoint at {self.directory}/{step} does not match this config's model or "
                f"optimizer ({type(error).__name__}: {str(error)[:200]}); use a new --config.workdir "
                "or restore the config the run started with"
            ) from None

    def wait(self) -> None:
        """Block until pending async saves are on disk."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()
