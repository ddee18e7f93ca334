"""What every script in scripts/ does the same way: quiet library logs, user errors in one line."""
from __future__ import annotations

import contextlib
import sys
from typing import Iterator

from absl import flags, logging

from lmphys.errors import LmphysError


def quiet_library_logs() -> None:
    """orbax and jax log every checkpoint save at INFO; keep progress lines readable unless the
    user asked for a --verbosity."""
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """A config or data mistake ends the script with `error: <sentence>` and exit status 2."""
    try:
        yield
    except LmphysError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
