"""Ctrl-C and SIGTERM while a plan runs: the first asks for the running statement to be
cancelled and the plan to stop at the next safe point, so that what committed is known exactly;
a second one stops at once.

The CLI installs the handlers (`install`) and gives the cancel action once connected; the engine
and the wire protocol ask `check()` at safe points, which raises Interrupted when a stop was
asked for.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType


class Interrupted(Exception):
    """A stop was asked for (Ctrl-C or SIGTERM); `signal` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__("interrupted")
        self.signum = signum


class Abandoned(BaseException):
    """A second Ctrl-C or SIGTERM: stop now, without waiting for the server's answer."""

    def __init__(self, signum: int) -> None:
        super().__init__("interrupted again")
        self.signum = signum


class _State:
    requested: int | None = None  # the signal of a stop asked for, not yet acted on
    cancel: Callable[[], object] | None = None


_state = _State()


def requested() -> int | None:
    return _state.requested


def check() -> None:
    """Raise Interrupted if a stop was asked for."""
    if _state.requested is not None:
        raise Interrupted(_state.requested)


def _handle(signum: int, _: FrameType | None) -> None:
    if _state.requested is not None or _state.cancel is None:
        # a second signal, or one before there is anything to cancel: stop at once
        raise Abandoned(signum)
    _state.requested = signum
    _state.cancel()  # the server cancels the running statement; the engine reads the outcome


@contextmanager
def install(cancel: Callable[[], object] | None = None) -> Iterator[None]:
    """Handle SIGINT and SIGTERM for the duration; `cancel` asks the server to cancel."""
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    _state.requested, _state.cancel = None, cancel
    for signum in previous:
        signal.signal(signum, _handle)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _state.requested, _state.cancel = None, None


def arm(cancel: Callable[[], object]) -> None:
    """Once connected: a first signal cancels the running statement rather than stopping."""
    _state.cancel = cancel
