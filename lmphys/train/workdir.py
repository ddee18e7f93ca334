"""A run's workdir as a place on disk: made and checked up front, locked while a process trains in
it, written atomically, and every refused write told in one sentence.

`prepare` makes the workdir and stops a run whose workdir is a file (ConfigError). `WorkdirLock`
takes an exclusive flock on `<workdir>/lock` for as long as a process trains there, with the
holder's pid, host and start time in the file, so a second process stops at once with
WorkdirBusy naming both; the kernel drops the lock when its holder dies, even by SIGKILL.
`write_atomic` writes a whole file or nothing (a temporary file renamed over the old one).
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time

from lmphys.errors import ConfigError, LmphysError, StorageError, advice, describe

LOCK_FILE = "lock"

class WorkdirBusy(LmphysError):
    """Another process holds the workdir's lock."""


def prepare(workdir: str) -> str:
    """Make the workdir (and its parents); its absolute path. ConfigError when it cannot be one."""
    path = os.path.abspath(workdir)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigError(f"workdir = {workdir!r} is invalid: it is a file, not a directory")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"workdir = {workdir!r} is invalid: it cannot be made ({describe(error)})") from None
    return path


class WorkdirLock:
    """An exclusive lock on a workdir for one process (a context manager).

    flock locks belong to an open file, so two jobs of one process (a sweep's threads) exclude each
    other too. On a file system without flock (some network mounts) the run goes on unlocked.
    """

    def __init__(self, workdir: str):
        self.workdir = workdir
        self.path = os.path.join(workdir, LOCK_FILE)
        self._handle = None

    def __enter__(self) -> "WorkdirLock":
        try:
            handle = open(self.path, "a+")
        except OSError as error:
            raise ConfigError(f"workdir = {self.workdir!r} is invalid: it is not writable ({describe(error)})") from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "a process that has not written its name yet"
            handle.close()
            raise WorkdirBusy(f"{self.workdir} is in use by another run ({holder}): wait for it to end "
                              "or give this one another workdir") from None
        except OSError:  # no locks on this file system: nothing to hold
            handle.close()
            return self
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        handle.flush()
        self._handle = handle
        return self

    def __exit__(self, *exc) -> None:
        if self._handle is None:
            return
        with contextlib.suppress(OSError):  # a stale name would point the next refusal at a gone process
            self._handle.truncate(0)
        fcntl.flock(self._handle, fcntl.LOCK_UN)
        self._handle.close()
        self._handle = None


def write_atomic(path: str, text: str) -> None:
    """Replace `path` by `text` whole, or leave it as it was (StorageError, in one sentence)."""
    temporary = path + ".tmp"
    try:
        with open(temporary, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError as error:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        raise StorageError(f"could not write {path}: {describe(error)}; {advice(error)} and rerun") from None
