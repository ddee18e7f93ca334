"""Checkpoints of the training state with orbax: async saves, keep the last N, resume the newest
one that restores.

Orbax writes each step into a temporary directory and renames it when complete, so a crash during
a save leaves the previous checkpoint intact; `all_steps` only sees finished ones, and the
half-written directories a crash leaves behind are removed when a trainer opens the workdir
again (a reader, `read_only=True`, leaves them to the trainer that may be writing them).

A save that fails (no space, no permission, a read-only file system) or has not finished after
`save_timeout_seconds` raises StorageError in one sentence naming the checkpoint that is still
intact; waits on orbax's threads are bounded so that a hung disk cannot hang the run. A finished
checkpoint that no longer restores (a file inside it truncated or missing) raises
CorruptCheckpoint; one whose arrays have other shapes than the run's state raises
CheckpointError (a mismatch: the config changed). Telling the two apart matters: the first is
skipped for an older checkpoint (`set_aside`), the second is the user's to fix.
"""
from __future__ import annotations

import contextlib
import errno
import os
import sys
import tempfile
import threading
import time
from typing import Any, Callable

import jax
import numpy as np
import orbax.checkpoint as ocp

from lmphys.errors import DataError, LmphysError, StorageError, advice, describe, error_number

DEFAULT_SAVE_TIMEOUT_SECONDS = 600.0
CORRUPT_DIR = "corrupt_checkpoints"  # in the workdir: where corrupt checkpoints are moved aside

# Orbax's async saves are not safe when several managers save at once from different threads of
# one process (seen with orbax 0.12.8: a save collided with itself on its temporary directory while
# sweep jobs ran in threads). Saves from threads other than the main one therefore take turns, each
# finishing its write before the next starts; the main thread keeps fully async saves.
_THREAD_SAVES = threading.Lock()


class CheckpointError(LmphysError):
    """A checkpoint in the workdir does not fit the configured run (its shapes differ)."""


class CorruptCheckpoint(LmphysError):
    """A finished checkpoint that does not restore although its shapes fit the run."""

    def __init__(self, directory: str, step: int, reason: str):
        super().__init__(f"checkpoint {step} in {directory} is corrupt ({reason})")
        self.step = step
        self.details = ""  # what the storage library printed while it failed


def finished_steps(workdir: str) -> list[int]:
    """The finished checkpoint steps of a workdir, read from its files (orbax renames a step's
    directory to its number when the step is complete)."""
    directory = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(directory):
        return []
    return sorted(int(name) for name in os.listdir(directory) if name.isdigit())


class Checkpointer:
    """Saves and restores the pytree train state under `<workdir>/checkpoints/<step>`."""

    def __init__(self, workdir: str, keep: int, *, read_only: bool = False,
                 save_timeout_seconds: float = DEFAULT_SAVE_TIMEOUT_SECONDS):
        self.workdir = os.path.abspath(workdir)
        self.directory = os.path.join(self.workdir, "checkpoints")
        self._timeout = save_timeout_seconds
        self._requested: set[int] = set()  # steps saved (or being saved) by this process
        self._pending: int | None = None  # the step whose async save may still be running
        self._broken = False  # a save failed or hung: orbax's threads are not to be waited on again
        self._closed = False
        if os.path.lexists(self.directory) and not os.path.isdir(self.directory):
            raise StorageError(f"could not open the checkpoints in {self.directory}: a file stands where a directory "
                               "belongs; move the file out of the way and rerun")
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=not read_only, read_only=read_only,
                                               cleanup_tmp_directories=not read_only)
        try:
            self._manager = ocp.CheckpointManager(self.directory, options=options,
                                                  item_handlers=ocp.StandardCheckpointHandler())
        except (OSError, ValueError) as error:
            raise StorageError(f"could not open the checkpoints in {self.directory}: {describe(error)}; "
                               f"{advice(error)} and rerun") from None

    def latest_step(self) -> int | None:
        steps = self.all_steps()
        return steps[-1] if steps else None

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def save(self, step: int, state: Any) -> None:
        """Start an async save of `state` at `step` (after the previous one is on disk). A step
        saved before is kept as it is: runs replay exactly, so a resumed run would only write the
        same values again."""
        if step in self._requested or step in self._manager.all_steps():
            return
        self._requested.add(step)
        in_main_thread = threading.current_thread() is threading.main_thread()
        with contextlib.nullcontext() if in_main_thread else _THREAD_SAVES:
            self.wait()
            try:
                self._manager.save(step, args=ocp.args.StandardSave(state))
            except (OSError, ValueError) as error:
                self._broken = True
                raise self._save_failed(step, describe(error), error) from None
            self._pending = step
            if not in_main_thread:
                self.wait()

    def wait(self) -> None:
        """Block until the pending async save is on disk; StorageError if it failed, or if it has
        not finished within the save timeout (the waiting thread is then abandoned)."""
        if self._pending is None or self._broken:
            return
        step, self._pending = self._pending, None
        failures: list[BaseException] = []

        def wait_for_orbax() -> None:
            try:
                self._manager.wait_until_finished()
            except BaseException as error:  # noqa: BLE001 (handed to the waiting thread)
                failures.append(error)

        waiter = threading.Thread(target=wait_for_orbax, name=f"checkpoint-{step}-wait", daemon=True)
        waiter.start()
        waiter.join(self._timeout)
        if waiter.is_alive():
            self._broken = True
            raise self._save_failed(step, f"it was still unfinished after {self._timeout:g} s "
                                          "(train.save_timeout_seconds), so the disk may be hung", None)
        if failures:
            self._broken = True
            raise self._save_failed(step, describe(failures[0]), failures[0])

    def _save_failed(self, step: int, reason: str, error: BaseException | None) -> StorageError:
        earlier = [kept for kept in finished_steps(self.workdir) if kept < step]
        kept = f"the checkpoint of step {earlier[-1]} is intact" if earlier else "no earlier checkpoint was kept"
        todo = "fix the disk" if error is None else advice(error)
        return StorageError(f"could not write the checkpoint of step {step} to {self.directory}: {reason}; "
                            f"{kept}: {todo} and rerun to resume")

    def restore(self, step: int, like: Any) -> Any:
        """Restore the state saved at `step` with the structure, shapes and dtypes of `like`.
        CheckpointError if its shapes differ from `like`'s, CorruptCheckpoint if it is damaged."""
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        captured = _CapturedStderr()
        try:
            with captured:
                try:
                    state = self._manager.restore(step, args=ocp.args.StandardRestore(abstract))
                except Exception:
                    captured.settle()
                    raise
            sys.stderr.write(captured.text)  # what a good restore printed is the user's to see
            return state
        except Exception as error:  # noqa: BLE001 (orbax and tensorstore raise many types for one damaged file)
            if error_number(error) in (errno.EACCES, errno.EPERM):
                raise StorageError(f"could not read the checkpoint {self.directory}/{step}: permission denied; "
                                   "make it readable and rerun") from None
            difference = self._difference(step, like)
            if difference:
                raise CheckpointError(
                    f"shape mismatch: the checkpoint {self.directory}/{step} does not match this config's model or "
                    f"optimizer ({difference}); use a new workdir or restore the config the run started with"
                ) from None
            first_line = (str(error).strip().splitlines() or [""])[0]
            corrupt = CorruptCheckpoint(self.directory, step, f"{type(error).__name__}: {first_line[:120]}")
            corrupt.details = captured.text
            raise corrupt from None

    def _difference(self, step: int, like: Any) -> str | None:
        """How the arrays saved at `step` differ from `like`'s, or None when they are the same or
        the checkpoint's own description of them is unreadable (then it is damaged, not different)."""
        try:
            metadata = self._manager.item_metadata(step)
        except Exception:  # noqa: BLE001 (a damaged metadata file raises whatever its parser does)
            return None
        if metadata is None:
            return None
        saved, wanted = _arrays(metadata), _arrays(like)
        for path in sorted(saved.keys() | wanted.keys(), key=lambda path: (not path.startswith("params."), path)):
            if path not in wanted:
                return f"it holds {path}, which this config's state lacks"
            if path not in saved:
                return f"it lacks {path}, which this config's state has"
            if saved[path] != wanted[path]:
                return f"{path} is {saved[path][0]} {saved[path][1]} there and {wanted[path][0]} {wanted[path][1]} here"
        return None

    def set_aside(self, step: int, details: str = "") -> str:
        """Move the checkpoint of `step` out of the way into <workdir>/corrupt_checkpoints/ (kept
        for a look, never restored or counted again), with `details` (what the failed restore
        printed) in restore_errors.txt beside it; the path it went to."""
        target = os.path.join(self.workdir, CORRUPT_DIR, str(step))
        suffix = 1
        while os.path.exists(target):
            suffix += 1
            target = os.path.join(self.workdir, CORRUPT_DIR, f"{step}-{suffix}")
        try:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.rename(os.path.join(self.directory, str(step)), target)
            if details:
                with open(target + ".restore_errors.txt", "w") as handle:
                    handle.write(details)
        except OSError as error:
            raise StorageError(f"could not move the corrupt checkpoint {self.directory}/{step} aside: "
                               f"{describe(error)}; {advice(error)} and rerun") from None
        self._manager.reload()
        return target

    def restore_newest(self, like: Any, log: Callable[[str], None]) -> tuple[int, Any]:
        """(step, state) of the newest checkpoint that restores, for readers: a corrupt one is
        skipped with a line to `log`; DataError when there is none."""
        for step in reversed(self.all_steps()):
            try:
                return step, self.restore(step, like)
            except CorruptCheckpoint as error:
                log(f"note: skipped {error}")
        raise DataError(f"{self.workdir} holds no finished checkpoint that restores")

    def close(self) -> None:
        """Wait (bounded) for the pending save, then release orbax's resources; closing again
        does nothing."""
        if self._closed:
            return
        self._closed = True
        try:
            self.wait()
        finally:
            if not self._broken:
                self._manager.close()


class _CapturedStderr:
    """Holds what is printed to file descriptor 2 while it is entered. When a restore fails,
    orbax closes its event loop while tensorstore's threads still finish the other reads, and
    each of them prints a traceback from native code; `settle` waits until they are done."""

    text = ""

    def __enter__(self) -> "_CapturedStderr":
        sys.stderr.flush()
        self._file = tempfile.TemporaryFile()
        self._saved = os.dup(2)
        os.dup2(self._file.fileno(), 2)
        return self

    def settle(self, quiet_seconds: float = 0.2, at_most_seconds: float = 5.0) -> None:
        """Wait until nothing more was printed for `quiet_seconds` (or `at_most_seconds` passed)."""
        deadline = time.monotonic() + at_most_seconds
        size, quiet_since = -1, time.monotonic()
        while time.monotonic() < deadline:
            now_size = os.fstat(self._file.fileno()).st_size
            if now_size != size:
                size, quiet_since = now_size, time.monotonic()
            elif time.monotonic() - quiet_since >= quiet_seconds:
                return
            time.sleep(0.02)

    def __exit__(self, *exc) -> None:
        sys.stderr.flush()
        os.dup2(self._saved, 2)
        os.close(self._saved)
        self._file.seek(0)
        self.text = self._file.read().decode(errors="replace")
        self._file.close()


def _arrays(tree: Any) -> dict[str, tuple[tuple[int, ...], str]]:
    """{dotted path: (shape, dtype)} of a state or of orbax's metadata of one; sequence indices
    and namedtuple fields are named the same way in both."""
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        name = ".".join(str(getattr(key, "key", getattr(key, "idx", getattr(key, "name", key)))) for key in path)
        out[name] = (tuple(leaf.shape), np.dtype(leaf.dtype).name)
    return out
