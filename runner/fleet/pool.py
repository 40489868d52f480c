"""The pool a rollout's targets run in: at most `parallel` at once, each on a thread of its
own with its own connection; deadlines watched, stops asked for, sockets shut when a target
does not answer."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import ExitCode, SqlPlanError
from ..run import interrupts
from .results import FleetEvents, FleetResult, TargetResult

# Seconds a target asked to stop (its deadline passed, or Ctrl-C) may take to answer the
# cancel before its socket is shut.
GRACE = 5.0
TICK = 0.1  # seconds between two looks at the running targets


class Slot:
    """A target being worked on: its thread, and its connection while one is open."""

    def __init__(self, target: TargetResult) -> None:
        self.target = target
        self.thread: threading.Thread | None = None
        self.con: Any = None
        self.pg: Any = None  # its connect.target.Target
        self.started = time.monotonic()
        self.asked: float | None = None  # when it was asked to stop
        self.shut = False
        self.done = False


class Pool:
    """At most `parallel` targets at once, each on a thread of its own."""

    def __init__(
        self,
        fleet: FleetResult,
        loaded: Sequence[tuple[Any, dict[str, object]]],
        events: FleetEvents,
        version: str,
    ) -> None:
        self.fleet, self.loaded, self.events, self.version = fleet, loaded, events, version
        self.options = fleet.options
        self.running: list[Slot] = []
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.failures = 0
        self.open = 0
        self.stopped: str | None = None

    def run(self, targets: Sequence[TargetResult], *, rehearse: bool = False) -> None:
        from .target_run import rehearse_target, run_target

        work: Callable[..., None] = rehearse_target if rehearse else run_target
        queue = list(targets)
        while queue or self.running:
            while queue and len(self.running) < self.options.parallel and not self.stopped:
                self._start(queue.pop(0), work)
            self.wake.wait(TICK)
            self.wake.clear()
            self._reap(rehearse)
            self._watch()
            if interrupts.requested() is not None and not self.stopped:
                self.stopped = f"stopped ({interrupts.name(interrupts.requested() or 2)})"
            if self.stopped:
                queue.clear()
            self.events.tick(self.fleet, len(self.running))

    def _start(self, target: TargetResult, work: Callable[..., None]) -> None:
        slot = Slot(target)
        thread = threading.Thread(
            target=self._work, args=(slot, work), name=f"target {target.target.name}", daemon=True
        )
        slot.thread = thread
        self.running.append(slot)
        self.events.target_started(target)
        thread.start()

    def _work(self, slot: Slot, work: Callable[..., None]) -> None:
        try:
            work(slot, self)
        except BaseException as e:  # a bug: the target says so, the rollout goes on
            from ..errors import internal_error

            error = SqlPlanError(internal_error(e))
            error.exit_code = ExitCode.INTERNAL
            slot.target.run.fail(error)
        finally:
            interrupts.forget(threading.get_ident())
            slot.target.seconds = time.monotonic() - slot.started
            slot.done = True
            self.wake.set()

    def opened(self, slot: Slot, con: Any, pg: Any) -> bool:
        """A target's connection is open; False: it must close it at once (asked to stop)."""
        with self.lock:
            slot.con, slot.pg = con, pg
            self.open += 1
            self.fleet.most_open = max(self.fleet.most_open, self.open)
            return slot.asked is None and not slot.shut

    def closing(self, slot: Slot) -> None:
        with self.lock:
            if slot.con is not None:
                slot.con = None
                self.open -= 1

    def _reap(self, rehearse: bool) -> None:
        for slot in [s for s in self.running if s.done]:
            self.running.remove(slot)
            target = slot.target
            if slot.thread is not None:
                slot.thread.join()
            if not rehearse:
                from .target_run import settle

                settle(target)
                if target.status in ("failed", "in doubt"):
                    self.failures += 1
            elif target.rehearsal != "ok":
                self.failures += 1
            budget = self.options.max_failures
            if budget and self.failures >= budget and not self.stopped:
                what = "rehearsal" if rehearse else "target"
                self.stopped = (
                    f"{self.failures} {what}{'s' if self.failures > 1 else ''} failed "
                    f"(--max-failures {budget})"
                )
            self.events.target_finished(target)

    def _watch(self) -> None:
        """Deadlines: ask a target past its own to stop; shut one that does not."""
        now = time.monotonic()
        deadline = self.options.deadline
        for slot in self.running:
            if slot.done:
                continue
            if slot.asked is None and deadline is not None and now - slot.started > deadline:
                slot.target.timed_out = True
                self._ask(slot, interrupts.DEADLINE)
            elif slot.asked is not None and not slot.shut and now - slot.asked > GRACE:
                self._shut(slot)

    def _ask(self, slot: Slot, reason: int) -> None:
        slot.asked = time.monotonic()
        if slot.thread is not None and slot.thread.ident is not None:
            interrupts.stop_thread(slot.thread.ident, reason)
        with self.lock:
            con, pg = slot.con, slot.pg
        if con is not None:
            _in_background(_cancel, pg, con)

    def stop_all(self) -> None:
        """Ctrl-C or SIGTERM (the signal handler, in this thread): every running target is
        asked to stop; the loop shuts those that do not."""
        for slot in self.running:
            if slot.asked is None and not slot.done:
                slot.asked = time.monotonic()
                with self.lock:
                    con, pg = slot.con, slot.pg
                if con is not None:
                    _in_background(_cancel, pg, con)

    def _shut(self, slot: Slot) -> None:
        """Shut the target's socket under it: its thread's next read fails, and what it had
        not committed is the server's to roll back (the ledger says what was in flight)."""
        with self.lock:
            slot.shut = True
            con = slot.con
        if con is None:
            return
        sock = getattr(con, "_usock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def abandon(self) -> None:
        """A second Ctrl-C: nothing more goes to any server; the running targets are
        unknown."""
        for slot in self.running:
            if not slot.done:
                self._shut(slot)
                slot.target.status = "unknown"
                slot.target.why = (
                    "stopped at once while it ran: what it committed before is not known "
                    "here (sqlplan status shows a once plan's history)"
                )


def _cancel(pg: Any, con: Any) -> None:
    from ..connect.connection import cancel

    cancel(pg, con)


def _in_background(function: Callable[..., object], *args: object) -> None:
    threading.Thread(target=function, args=args, daemon=True).start()
