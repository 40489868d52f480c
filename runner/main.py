"""The `sqlplan` console script. Before anything else is imported, a command that connects
starts its connection in the background (connect/early.py); then the command runs."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Sequence


def _stopped(signum: int, _: object) -> None:
    """Ctrl-C or SIGTERM while the command is still starting: as after it, an exit with the
    signal's code and a line, never a traceback (the command installs its own handlers)."""
    name = "SIGTERM" if signum == signal.SIGTERM else "Ctrl-C"
    os.write(2, f"sqlplan: interrupted ({name}); no step had started\n".encode())
    os._exit(143 if signum == signal.SIGTERM else 130)


def _known_valid(paths: Sequence[str]) -> bool:
    from .plan.cache import known_valid

    return known_valid(paths)


def entry() -> None:
    signal.signal(signal.SIGINT, _stopped)
    signal.signal(signal.SIGTERM, _stopped)
    from .connect import early

    # Whatever this hits, the command's own connection meets again and reports.
    with contextlib.suppress(Exception):
        early.start(sys.argv[1:], os.environ, os.getcwd(), _known_valid)
    from .cli import entry as command

    command()
