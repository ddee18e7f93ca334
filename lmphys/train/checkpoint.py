"""Checkpoints of the training state with orbax: async saves, keep the last N, resume the latest.

Orbax writes each step into a temporary directory and renames it when complete, so a crash during
a save leaves the previous checkpoint intact; `latest_step` and `all_steps` only see finished ones,
and the half-written directories a crash leaves behind are removed when the workdir is opened again.
"""
from __future__ import annotations

import os
import threading
from typing import Any

import jax
import orbax.checkpoint as ocp

from lmphys.errors import LmphysError


# Orbax's async saves are not safe when several managers save at once from different threads of
# one process (seen with orbax 0.12.8: a save collided with itself on its temporary directory while
# sweep jobs ran in threads). Saves from threads other than the main one therefore take turns, each
# finishing its write before the next starts; the main thread keeps fully async saves.
_THREAD_SAVES = threading.Lock()


class CheckpointError(LmphysError):
    """A checkpoint in the workdir does not fit the configured run."""


class Checkpointer:
    """Saves and restores the pytree train state under `<workdir>/checkpoints/<step>`."""

    def __init__(self, workdir: str, keep: int):
        self.directory = os.path.join(os.path.abspath(workdir), "checkpoints")
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, cleanup_tmp_directories=True)
        self._manager = ocp.CheckpointManager(self.directory, options=options)
        self._requested: set[int] = set()  # steps saved (or being saved) by this process

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def save(self, step: int, state: Any) -> None:
        """Start an async save of `state` at `step`. A step saved before is kept as it is: runs
        replay exactly, so a resumed run would only write the same values again."""
        if step in self._requested or step in self._manager.all_steps():
            return
        self._requested.add(step)
        if threading.current_thread() is threading.main_thread():
            self._manager.save(step, args=ocp.args.StandardSave(state))
            return
        with _THREAD_SAVES:
            self._manager.save(step, args=ocp.args.StandardSave(state))
            self._manager.wait_until_finished()

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
