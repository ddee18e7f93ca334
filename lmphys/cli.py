"""What every script in scripts/ does the same way: `run(main)` starts it.

It parses the flags, keeps library logs quiet, and ends every mistake with `error: <one sentence>`
on stderr: a bad flag or config file (checked before absl reads it, so that a broken config file
or a bad `:argument` gets a sentence rather than a flags traceback), a UsageError, or any
LmphysError. Exit statuses (lmphys.errors): 0 done, 1 the job failed (a diverged run, failed
trials), 2 a user mistake, 74 a write failed, 75 stopped before the end (SIGTERM, Ctrl-C; rerun
to resume).
"""
from __future__ import annotations

import functools
import logging as python_logging
import os
import re
import sys
import threading
import traceback
from typing import Callable, NoReturn

from absl import app, flags, logging

from lmphys import config as config_lib
from lmphys.errors import EXIT_STORAGE, EXIT_USER_ERROR, LmphysError, describe


def run(main: Callable[[list[str]], int | None], config_flag: str | None = None,
        default_config: str | None = None) -> None:
    """absl's app.run of `main` with this module's flag parsing and error handling; `main`
    returns the exit status (None for 0). `config_flag` names the script's config-file flag (from
    config_flags.DEFINE_config_file, defined without a default) and `default_config` the file it
    means when it is not given: a config flag defined with a default would load that file,
    overrides included, as soon as the script is imported, before any error could be caught."""
    parser = functools.partial(parse_flags, config_flag=config_flag, default_config=default_config)
    app.run(lambda argv: _run_main(main, argv), flags_parser=parser)


def parse_flags(argv: list[str], config_flag: str | None = None, default_config: str | None = None) -> list[str]:
    """absl's flag parsing, with every error in one sentence and exit status 2."""
    if config_flag and default_config and _given(argv, config_flag) is None:
        argv = argv[:1] + [f"--{config_flag}={default_config}"] + argv[1:]
    try:
        if config_flag:
            _check_config_file(argv, config_flag)
        return flags.FLAGS(argv)
    except LmphysError as error:
        fail(str(error), error.exit_status)
    except flags.Error as error:
        fail(_flag_sentence(str(error)))
    except Exception as error:  # noqa: BLE001 (whatever else a flag's parser raises is the user's input)
        fail(f"the command line could not be parsed: {type(error).__name__}: {str(error).strip().splitlines()[0]}")


def fail(sentence: str, status: int = EXIT_USER_ERROR) -> NoReturn:
    """Print `error: <sentence>` and exit with `status`."""
    if status == EXIT_STORAGE:
        _exit_past_storage_threads(f"error: {sentence}\n", status)
    print(f"error: {sentence}", file=sys.stderr, flush=True)
    sys.exit(status)


def _exit_past_storage_threads(line: str, status: int) -> NoReturn:
    """Write `line` as the last thing on stderr and leave at once. After a refused write, storage
    threads (orbax's, tensorstore's) may be blocked on the disk, and the interpreter would wait for
    them at exit: that hang is why this exits with os._exit. Those threads may also still be
    printing a traceback into sys.stderr's buffer, and a flush of that buffer would splice our
    sentence into it; so the hooks that print them are silenced, sys.stderr is set aside unflushed
    (whatever a thread left half-written in it is dropped) and the sentence goes to the file
    descriptor directly."""
    sys.excepthook = lambda *exc_info: None
    threading.excepthook = lambda hook_args: None
    sys.unraisablehook = lambda unraisable: None
    sys.stdout.flush()
    sys.stderr = open(os.devnull, "w")
    os.write(2, line.encode("utf-8", "backslashreplace"))
    os._exit(status)


def _run_main(main, argv: list[str]) -> int | None:
    quiet_library_logs()
    try:
        return main(argv)
    except app.UsageError as error:
        fail(str(error))
    except LmphysError as error:
        fail(str(error), error.exit_status)
    except OSError as error:  # a read or write no module turned into a sentence
        where = f" {error.filename}" if error.filename else ""
        fail(f"could not read or write{where}: {describe(error)}", EXIT_STORAGE)


def _check_config_file(argv: list[str], name: str) -> None:
    """Load the file of `--<name>=file.py[:arg]` with config.load_config_file and check that each
    `--<name>.<field>=...` names one of its fields: ConfigError otherwise."""
    value = _given(argv, name)
    if not value:
        return
    path, colon, argument = value.partition(":")
    config = config_lib.load_config_file(path, *([argument] if colon else []))
    for word in argv[1:]:
        match = re.match(rf"^--?(?:no)?{re.escape(name)}\.([^=]+)", word)
        if match:
            config_lib.check_field(config, match.group(1), f"the config of {value}")


def _given(argv: list[str], name: str) -> str | None:
    """The value of `--name=value` or `--name value` in argv (the last one), or None."""
    found = None
    for index, word in enumerate(argv[1:], 1):
        if word in (f"--{name}", f"-{name}") and index + 1 < len(argv):
            found = argv[index + 1]
        elif word.startswith((f"--{name}=", f"-{name}=")):
            found = word.split("=", 1)[1]
    return found


def _flag_sentence(message: str) -> str:
    """absl's flag error as one sentence: 'flag --count=0: must be >= 1' -> '--count=0 is invalid:
    it must be >= 1'."""
    first = message.strip().splitlines()[0].strip() if message.strip() else "the flags are invalid"
    unknown = re.match(r"Unknown command line flag '([^']+)'", first)
    if unknown:
        return f"--{unknown.group(1)} is not a flag of this script (--helpshort lists them)"
    required = re.search(r"[Ff]lag --(\w+) must have a value other than None", first)
    if required:
        return f"--{required.group(1)} is required"
    value = re.match(r"flag (--\S+?): (.*)", first)
    if value:
        reason = value.group(2).rstrip(".")
        return f"{value.group(1)} is invalid: {reason[:1].lower() + reason[1:]}"
    return first.rstrip(".")


class _LibraryRecords(python_logging.Filter):
    """Drops orbax's log records: a failed save logs each of its threads' tracebacks, and the run
    says what happened in one sentence of its own."""

    def filter(self, record: python_logging.LogRecord) -> bool:
        return f"{os.sep}orbax{os.sep}" not in record.pathname


def quiet_library_logs() -> None:
    """orbax and jax log every checkpoint save at INFO, and orbax every failed thread at ERROR;
    keep progress lines and error sentences readable unless the user asked for a --verbosity."""
    if flags.FLAGS["verbosity"].present:
        return
    logging.set_verbosity(logging.WARNING)
    logging.get_absl_logger().addFilter(_LibraryRecords())
    # Reads abandoned by a failed restore are reported by asyncio when they are collected.
    python_logging.getLogger("asyncio").setLevel(python_logging.CRITICAL)
    sys.unraisablehook = _without_closed_loop_callbacks(sys.unraisablehook)


def _without_closed_loop_callbacks(hook):
    """`hook` (sys.unraisablehook) that drops one harmless report: after a failed save,
    tensorstore's threads keep finishing the writes orbax gave up on and hand each result to
    orbax's event loop, which is closed by then ('Event loop is closed' from call_soon_threadsafe);
    each would print a traceback, hundreds of them before the run's one sentence."""
    def unraisablehook(unraisable):
        if isinstance(unraisable.exc_value, RuntimeError) and str(unraisable.exc_value) == "Event loop is closed" \
                and any(frame.f_code.co_name == "call_soon_threadsafe"
                        for frame, _ in traceback.walk_tb(unraisable.exc_traceback)):
            return
        hook(unraisable)
    return unraisablehook
