"""Typed, actionable errors shared by every module: a user mistake gets one clear sentence, and so
does a refused write (`describe` and `advice` put an OS error into words).

Each error class carries the exit status a script ends with when it stops the script (cli.run):
2 for a user mistake, 74 when the disk refused a write. A run stopped before it finished (SIGTERM,
Ctrl-C) is no error: it exits with `EXIT_STOPPED`, 75, so that a scheduler can tell it from success.
"""

import errno
import os
import re

EXIT_FAILED = 1  # the job ran and failed: a diverged run, a sweep with failed trials
EXIT_USER_ERROR = 2
EXIT_STORAGE = 74  # sysexits.h EX_IOERR: a write failed (no space, no permission, read-only)
EXIT_STOPPED = 75  # sysexits.h EX_TEMPFAIL: stopped before the end; rerunning resumes it


class LmphysError(Exception):
    """Base class of errors that scripts print as one line instead of a traceback."""

    exit_status = EXIT_USER_ERROR


class ConfigError(LmphysError, ValueError):
    """A config value is invalid; the message names the dotted field and the allowed values."""


class DataError(LmphysError, ValueError):
    """Input data (a grammar file, a token array, a prompt) is malformed."""


class StorageError(LmphysError, OSError):
    """A file of a run could not be written (disk full, no permission, read-only file system, a file
    where a directory belongs); what was saved before is intact."""

    exit_status = EXIT_STORAGE


_REASONS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EFBIG: "the file grew past the size limit (ulimit -f)",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EROFS: "the file system is read-only",
    errno.ENOTDIR: "a file stands where a directory belongs",
    errno.EEXIST: "a file stands where a directory belongs",
    errno.EISDIR: "a directory stands where a file belongs",
    errno.EIO: "the disk reported an input/output error",
}
_ADVICE = {
    errno.ENOSPC: "free some space", errno.EDQUOT: "free some space", errno.EFBIG: "raise the file size limit",
    errno.EACCES: "make it writable", errno.EPERM: "make it writable", errno.EROFS: "make it writable",
    errno.ENOTDIR: "move the file out of the way", errno.EEXIST: "move the file out of the way",
    errno.EISDIR: "move the directory out of the way",
}
# Storage libraries (tensorstore under orbax) raise ValueErrors that quote the OS error's number.
_QUOTED_ERRNO = re.compile(r"os_error_code='?(\d+)|\[Errno (\d+)\]")


def error_number(error: BaseException) -> int | None:
    """The errno behind `error`: its own, one quoted in its message, or its cause's."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno:
            return error.errno
        match = _QUOTED_ERRNO.search(str(error))
        if match:
            return int(match.group(1) or match.group(2))
        error = error.__cause__ or error.__context__
    return None


def describe(error: BaseException) -> str:
    """A few words for why a read or write failed: "no space left on device"."""
    number = error_number(error)
    if number in _REASONS:
        return _REASONS[number]
    if number is not None:
        return os.strerror(number).lower()
    first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return f"{type(error).__name__}: {first_line[:200]}"


def advice(error: BaseException) -> str:
    """What the user can do about `error`: "free some space"."""
    return _ADVICE.get(error_number(error), "fix the cause")
