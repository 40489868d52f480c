"""A backfill step on the wire: its statement over the table's key, batch by batch, each batch
a transaction of its own in two round trips:

1. BEGIN, the step's settings (SET LOCAL), the checkpoint moved to the batch's last key
   (refused when another run moved it first), the statement with the batch's range;
2. the rows it changed added to the checkpoint, COMMIT, and the next batch's range.

The checkpoint commits with the batch's changes or not at all, so that a run stopped anyhow
(Ctrl-C, kill -9, a lost connection, a restarted server) resumes exactly where the database
says: no key range is done twice by batches that both committed, none is skipped.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import ExitCode, StepFailed
from ..plan.model import BackfillStep, Plan
from . import interrupts, wire
from .backfill_sql import (
    CLAIM,
    COUNT,
    CREATE,
    FINISH,
    MOVE,
    STATE,
    Key,
    KeyRefused,
    array,
    inspect,
)
from .failures import RETRYABLE, lost_failure, roll_back, server_failure, step_failed
from .ledger import Batches, Fate
from .messages import Output, say
from .progress import Verdict
from .settings import set_local

MAX_GROWTH = 100  # with batch_time: at most this many times `batch` keys a batch


class Unfinished(StepFailed):
    """A backfill stopped at its max_duration, at a batch boundary; the next run resumes."""

    exit_code = ExitCode.UNFINISHED


@dataclass
class _Range:
    """The next batch: its keys after `after` (None: from the first) up to `last`, `count` of
    them; `first` is its first key (for `key >= $1`)."""

    after: list[str] | None
    last: list[str]
    count: int
    first: list[str] | None = None
    began: float = 0.0  # when its transaction began (time.monotonic)
    last_one: bool = False  # fewer keys were left than a batch takes: it ends the backfill


REHEARSED = 3  # batches a rehearsal runs


def rehearse_backfill(step: BackfillStep, con: wire.Session) -> tuple[int, str]:
    """The first batches inside the rehearsal's transaction (which rolls them back), with
    neither the checkpoint nor a COMMIT: the rows they changed, and what they were."""
    try:
        key = inspect(con, step)
    except KeyRefused as refused:
        raise step_failed(step, f"{step.label} cannot run: {refused}") from None
    except wire.ServerFailure as failure:
        roll_back(con)
        raise server_failure(step, failure, True) from None
    batches = _Batches(step, con, _Silent(), key, Batches("rehearsal", step.key, ""))
    rows, times = 0, list[float]()
    try:
        ahead = batches._first_range(step.batch)
        while ahead is not None and len(times) < REHEARSED:
            lower = ahead.first if step.lower_inclusive else ahead.after
            assert lower is not None
            began = time.perf_counter()
            outcome = wire.extended(con, step.sql.text, [(*lower, *ahead.last)])
            times.append(time.perf_counter() - began)
            rows += max(outcome.row_count, 0)
            answers = wire.pipeline(con, batches._range_pieces(ahead.last, step.batch))
            ahead = batches._range_from(answers, ahead.last, step.batch)
    except wire.ServerFailure as failure:
        roll_back(con)
        raise server_failure(step, failure, True) from None
    slowest = max(times, default=0.0) * 1000
    left = "; more follow" if ahead is not None else "; no more keys: that was all of it"
    return rows, (
        f"the first {len(times)} of its batches of {step.batch:,} keys ({rows:,} rows changed), "
        f"the slowest {slowest:.1f} ms; about {key.estimate:,} rows in all{left}"
    )


class _Silent:
    def line(self, text: str) -> None:
        pass

    def progress(self, label: str, done: int, total: int) -> None:
        pass

    def warning(self, position: object, message: str, code: str) -> None:
        pass


def run_backfill(
    plan: Plan, step: BackfillStep, con: wire.Session, out: Output, figures: Batches
) -> int:
    """Run every batch left; the rows changed in all (every run's). Raises StepFailed, with
    `figures` saying what committed."""
    if wire.transaction_status(con) != b"I":
        raise step_failed(
            step, f"{step.label} commits batch by batch: it cannot run inside a transaction block"
        )
    try:
        key = inspect(con, step)
    except KeyRefused as refused:
        raise step_failed(step, f"{step.label} cannot run: {refused}") from None
    except wire.ServerFailure as failure:
        roll_back(con)
        raise server_failure(step, failure, False) from None
    walked = _checkpoint(con, plan, step, figures)
    if figures.earlier:
        out.warning(
            step.position,
            f"{step.label}: this backfill finished at {figures.finished} "
            f"({figures.total_rows:,} rows in {figures.total_batches:,} batches): not run "
            f"again (to run it again, delete its checkpoint: "
            f"DELETE FROM sqlplan.backfill WHERE id = {figures.ident!r})",
            "backfill-done",
        )
        return figures.total_rows
    say(out, step.before, {})
    return _Batches(step, con, out, key, figures).run(walked)


@dataclass
class _Batches:
    """The batches of one run of a backfill."""

    step: BackfillStep
    con: wire.Session
    out: Output
    key: Key
    figures: Batches

    def run(self, walked: int) -> int:
        step, figures = self.step, self.figures
        size = step.batch
        started = time.monotonic()
        ahead = self._first_range(size)
        last_time = 0.0
        while ahead is not None:
            if interrupts.requested() is not None:
                raise step_failed(step, f"{step.label} stopped between two batches")
            if (
                figures.batches
                and step.max_duration is not None
                and time.monotonic() - started + last_time > step.max_duration
            ):
                raise _unfinished(step, figures)
            if ahead.last == figures.checkpoint:  # a range that does not move on: a bug
                raise step_failed(step, f"{step.label}: the key range did not advance")
            began = time.monotonic()
            walked += ahead.count
            done = ahead
            size, ahead = self._batch(ahead, size)
            if done.last_one:
                # the keys ran out before the batch was full: it was the last one (rows added
                # since came after the backfill's end, as the application writes them)
                ahead = None
            last_time = time.monotonic() - began
            total = max(self.key.estimate, walked + (ahead.count if ahead is not None else 0))
            _progress(self.out, step, figures, walked if ahead else total, total, started=started)
            if ahead is not None and step.pause:
                _pause(step.pause)
        finished = wire.extended(
            self.con, FINISH, [[figures.ident, figures.checkpoint]], text_rows=True
        ).rows
        figures.finished = str(finished[0][0]) if finished else None
        fields = {"count": str(figures.total_rows), "batches": str(figures.total_batches)}
        say(self.out, step.after, fields)
        return figures.total_rows

    def _first_range(self, size: int) -> _Range | None:
        """The first batch of this run: after the checkpoint, or from the table's first key."""
        after = self.figures.checkpoint
        answers = wire.pipeline(self.con, self._range_pieces(after, size))
        return self._range_from(answers, after, size)

    def _range_pieces(self, after: list[str] | None, size: int) -> list[wire.Piece]:
        started = after is not None
        given = list(after) if after is not None else []
        key = self.key
        pieces = [wire.Piece(key.next_last(started), ([*given, size],), rows=True, quiet=True)]
        if self.step.lower_inclusive:
            pieces.append(wire.Piece(key.next_first(started), (given,), rows=True, quiet=True))
        elif not started:
            assert key.first_below is not None
            pieces.append(wire.Piece(key.first_below, ((),), rows=True, quiet=True))
        return pieces

    def _range_from(
        self, answers: Sequence[wire.Outcome], after: list[str] | None, size: int
    ) -> _Range | None:
        if not answers[0].rows:
            return None  # no key after the checkpoint: done
        *last, count = answers[0].rows[0]
        found = _Range(after, [str(v) for v in last], int(count), last_one=int(count) < size)
        if self.step.lower_inclusive:
            found.first = [str(v) for v in answers[1].rows[0]]
        elif after is None:
            found.after = [str(v) for v in answers[1].rows[0]]  # a value below the first key
        return found

    def _batch(self, batch: _Range, size: int) -> tuple[int, _Range | None]:
        """One batch, retried as its `retry` says; the next batch's size and range."""
        step, figures = self.step, self.figures
        attempt = 1
        while True:
            try:
                return self._one_batch(batch, size)
            except wire.ServerFailure as failure:
                roll_back(self.con)
                code = failure.fields.get("C", "")
                retry = step.retry
                where = figures.where(figures.checkpoint)
                if retry is None or code not in RETRYABLE or attempt >= retry.attempts:
                    failed = server_failure(step, failure, True)
                    failed.rolled_back = (
                        f"the batch after {where} was rolled back; the batches before it "
                        "stay committed"
                    )
                    raise failed from None
                wait = retry.backoff * 2 ** (attempt - 1)
                self.out.warning(
                    retry.position,
                    f"{step.label}: the batch after {where} failed on {RETRYABLE[code]} "
                    f"[{code}] (attempt {attempt} of {retry.attempts}), and was rolled back; "
                    f"running it again in {wait:g}s",
                    "retry",
                )
                _pause(wait)
                if interrupts.requested() is not None:
                    raise server_failure(step, failure, True) from None
                attempt += 1

    def _one_batch(self, batch: _Range, size: int) -> tuple[int, _Range | None]:
        step, figures, con = self.step, self.figures, self.con
        lower = batch.first if step.lower_inclusive else batch.after
        assert lower is not None
        first_flight = [wire.Piece("BEGIN", owner=step.number)]
        if step.settings:
            sql, params = set_local(step.settings)
            first_flight.append(wire.Piece(sql, (params,), owner=step.number, quiet=True))
        moved = (figures.ident, batch.last, figures.checkpoint, batch.count)
        first_flight += [
            wire.Piece(MOVE, (moved,), owner=step.number, quiet=True),
            wire.Piece(step.sql.text, ((*lower, *batch.last),), owner=step.number),
        ]
        wire.track(con, step.number)
        began = batch.began = time.monotonic()
        try:
            answers = wire.pipeline(con, first_flight)
        except wire.PipelineFailure as failure:
            if failure.index == len(first_flight) - 2 and failure.fields.get("C") == "22012":
                roll_back(con)
                raise step_failed(
                    step,
                    f"{step.label}: another run of this backfill moved its checkpoint first "
                    "(or finished it): this run stops, and kept nothing of the batch it was "
                    "about to run",
                    rolled_back="the batch's transaction was rolled back",
                ) from None
            raise
        except wire.ConnectionLost as lost:
            raise lost_failure(step, lost, Fate.ROLLED_BACK) from None
        changed = max(answers[-1].row_count, 0)
        size = _adapted(step, size, time.monotonic() - began)
        second_flight = [
            wire.Piece(COUNT, ((figures.ident, changed),), owner=step.number, quiet=True),
            wire.Piece("COMMIT", owner=step.number, commits=True),
            *self._range_pieces(batch.last, size),
        ]
        wire.track(con, step.number)
        try:
            answers = wire.pipeline(con, second_flight)
        except wire.ConnectionLost as lost:
            fate = self._unanswered(lost.progress.verdict(step.number), batch, changed)
            raise lost_failure(step, lost, fate) from None
        except interrupts.Abandoned:
            self._unanswered(wire.current(con).verdict(step.number), batch, changed)
            raise
        except wire.PipelineFailure as failure:
            if failure.index < 2:
                raise  # the batch's transaction failed: rolled back, and may run again
            _committed(figures, batch, changed)  # it committed; reading the next range failed
            raise server_failure(step, failure, False) from None
        _committed(figures, batch, changed)
        return size, self._range_from(answers[2:], batch.last, size)

    def _unanswered(self, verdict: Verdict, batch: _Range, changed: int) -> Fate:
        """The batch's fate when its second round trip got no full answer."""
        if verdict is Verdict.COMMITTED:
            _committed(self.figures, batch, changed)
            return Fate.COMMITTED
        if verdict is Verdict.UNANSWERED:
            self.figures.doubt = batch.last
            return Fate.IN_DOUBT
        return Fate.ROLLED_BACK


def _adapted(step: BackfillStep, size: int, spent: float) -> int:
    """The next batch's size: toward batch_time, at most doubled or halved at a time."""
    if step.batch_time is None or spent <= 0:
        return size
    wanted = int(size * step.batch_time / spent)
    return max(1, min(step.batch * MAX_GROWTH, max(size // 2, min(size * 2, wanted))))


def _checkpoint(con: wire.Session, plan: Plan, step: BackfillStep, figures: Batches) -> int:
    """Read the step's checkpoint into `figures`, made if it is new (and sqlplan.backfill, if
    that is); the keys earlier runs' batches covered."""
    exists = wire.extended(
        con, "SELECT to_regclass('sqlplan.backfill') IS NOT NULL", [[]], text_rows=True
    )
    if exists.rows[0][0] != "true":
        wire.simple(con, CREATE)
    relation = ".".join(step.table)
    wire.extended(con, CLAIM, [[figures.ident, plan.name, step.number, relation, list(step.key)]])
    [row] = wire.extended(con, STATE, [[figures.ident]], text_rows=True).rows
    last_key, keys, rows, batches, finished = row
    figures.checkpoint = array(last_key)
    figures.resumed_from = figures.checkpoint
    figures.total_rows, figures.total_batches = int(rows or 0), int(batches or 0)
    if finished is not None:
        figures.finished, figures.earlier = str(finished), True
    return int(keys or 0)


def _committed(figures: Batches, batch: _Range, changed: int) -> None:
    figures.longest = max(figures.longest, time.monotonic() - batch.began)
    figures.batches += 1
    figures.total_batches += 1
    figures.rows += changed
    figures.total_rows += changed
    figures.checkpoint = batch.last


def _progress(
    out: Output, step: BackfillStep, figures: Batches, walked: int, total: int, *, started: float
) -> None:
    """How far along the key it is: keys walked of the table's (as estimated), which gives
    the rate and the time left."""
    elapsed = max(time.monotonic() - started, 1e-9)
    out.progress(
        f"{step.label}: batch {figures.total_batches:,}, {figures.total_rows:,} rows changed, "
        f"{figures.rows / elapsed:,.0f} rows/s",
        walked,
        total,
    )


def _pause(seconds: float) -> None:
    """Wait between batches; a stop asked for ends the wait at once."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if interrupts.requested() is not None:
            return
        time.sleep(min(left, 0.05))


def _unfinished(step: BackfillStep, figures: Batches) -> Unfinished:
    assert step.max_duration is not None
    return Unfinished(
        f"{step.label} stopped at its max_duration ({step.max_duration:g}s), between two "
        f"batches: {figures.batches:,} committed in this run; run the plan again to resume "
        f"after {figures.where(figures.checkpoint)}",
        position=step.position,
        sql=step.sql.text,
        step=step.number,
    )
