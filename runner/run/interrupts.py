"""Ctrl-C and SIGTERM while a plan runs: the first asks for the running statement to be
cancelled and the plan to stop at the next safe point, so that what committed is known exactly;
a second one stops at once, and so does a cancel that no answer follows within CANCEL_WAIT
(a network that went silent).

The CLI installs the handlers (`install`) and gives the cancel action once connected; the engine
and the wire protocol ask `check()` at safe points, which raises Interrupted when a stop was
asked for.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType


class Interrupted(Exception):
    """A stop was asked for (Ctrl-C or SIGTERM); `signal` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__("interrupted")
        self.signum = signum


class Abandoned(BaseException):
    """A second Ctrl-C or SIGTERM, or no answer after a cancel: stop now, without waiting for
    the server's answer. `waited`: seconds waited for an answer after the cancel, if that is
    why."""

    def __init__(self, signum: int, waited: float | None = None) -> None:
        super().__init__("interrupted again")
        self.signum = signum
        self.waited = waited


# How long the run waits for the server's answer after a cancel request before it stops
# without one: a cancelled statement answers at once, a rollback in well under this.
CANCEL_WAIT = 10.0


# A stop asked of one thread alone, as a fleet asks of a target past its deadline: the
# engine in that thread stops at its next safe point as for a signal, named by this number.
DEADLINE = -1


class _State:
    requested: int | None = None  # the signal of a stop asked for, not yet acted on
    cancel: Callable[[], object] | None = None
    installed: bool = False


_state = _State()
_stops: dict[int, int] = {}  # thread ident -> a stop asked of that thread alone (DEADLINE)


def requested() -> int | None:
    """The stop asked for: the process's (a signal), else the running thread's own."""
    if _state.requested is not None:
        return _state.requested
    return _stops.get(threading.get_ident()) if _stops else None


def stop_thread(ident: int, reason: int = DEADLINE) -> None:
    """Ask one thread to stop at its next safe point (its statement is the caller's to
    cancel); `forget` once that thread is done."""
    _stops[ident] = reason


def forget(ident: int) -> None:
    _stops.pop(ident, None)


def name(signum: int) -> str:
    """A stop, as messages name it."""
    if signum == DEADLINE:
        return "its deadline"
    return "SIGTERM" if signum == signal.SIGTERM else "Ctrl-C"


def check() -> None:
    """Raise Interrupted if a stop was asked for."""
    signum = requested()
    if signum is not None:
        raise Interrupted(signum)


def _handle(signum: int, _: FrameType | None) -> None:
    if _state.requested is not None or _state.cancel is None:
        # a second signal, or one before there is anything to cancel: stop at once
        raise Abandoned(signum)
    _state.requested = signum
    _state.cancel()  # the server cancels the running statement; the engine reads the outcome
    signal.setitimer(signal.ITIMER_REAL, CANCEL_WAIT)  # ... if an answer comes at all


def _no_answer(_: int, __: FrameType | None) -> None:
    signum = _state.requested
    if signum is not None:
        raise Abandoned(signum, waited=CANCEL_WAIT)


def settled() -> None:
    """The run has what it waited for after a stop was asked for: no more deadline."""
    if threading.current_thread() is not threading.main_thread():
        return  # a fleet's target: the rollout keeps the deadline of its own
    signal.setitimer(signal.ITIMER_REAL, 0)


@contextmanager
def install(cancel: Callable[[], object] | None = None) -> Iterator[None]:
    """Handle SIGINT and SIGTERM for the duration; `cancel` asks the server to cancel. Within
    an install() already in force (the command's, around a library call), it changes nothing."""
    if _state.installed:
        yield
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM)}
    _state.requested, _state.cancel, _state.installed = None, cancel, True
    for signum in previous:
        signal.signal(signum, _no_answer if signum == signal.SIGALRM else _handle)
    try:
        yield
    finally:
        settled()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _state.requested, _state.cancel, _state.installed = None, None, False


def arm(cancel: Callable[[], object]) -> None:
    """Once connected: a first signal cancels the running statement rather than stopping."""
    _state.cancel = cancel
