"""What the server has confirmed of each request in the current interaction: every answer is
attributed to the request that caused it, in the order the protocol guarantees, so that after
a lost connection each step's fate is read off its own requests (wire.py keeps one Progress per
connection; engine.py reads the verdicts)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from pg8000.core import (
    COMMAND_COMPLETE,
    EMPTY_QUERY_RESPONSE,
    ERROR_RESPONSE,
    NOTICE_RESPONSE,
    PORTAL_SUSPENDED,
    READY_FOR_QUERY,
)

from .. import secrets

QUERY, EXECUTE, SYNC = "query", "execute", "sync"
COMPACT_AFTER = 4096  # requests held before the answered ones are first compacted


@dataclass
class Request:
    """One request whose answer the server owes: a simple Query (its statements' answers, then
    ReadyForQuery), an Execute (CommandComplete or ErrorResponse), or a Sync (ReadyForQuery).
    Every answer is attributed to the request that caused it, in the order the protocol
    guarantees, so that after a lost connection each step's fate is read off its own requests.
    """

    kind: str
    owner: int | None  # the step it belongs to; None: sqlplan's own bookkeeping
    commits: bool = False  # its answer says whether the owner's transaction committed
    statements: int = 0  # a Query's statements, when known
    tags: list[str] = field(default_factory=list)  # CommandComplete tags
    error: dict[str, str] | None = None
    status: bytes | None = None  # ReadyForQuery's transaction status (a Query, a Sync)
    answered: bool = False  # its last answer arrived
    skipped: bool = False  # an Execute the server skipped after an error before it

    def confirmed(self) -> bool:
        """Whether the server said that the transaction this request ends committed (or
        ended: the caller looks at the last tag for a ROLLBACK)."""
        if self.error is not None or self.skipped:
            return False
        if self.kind == SYNC:
            return self.status == b"I"
        if self.kind == EXECUTE:
            return self.answered
        # A simple Query's implicit transaction commits before its last CommandComplete.
        return (self.answered and self.status == b"I") or (0 < self.statements <= len(self.tags))


class Verdict(Enum):
    """What a step's own requests say of it after a lost connection."""

    NOT_SENT = "not sent"  # nothing of it reached the socket
    SKIPPED = "skipped"  # the server skipped it: an error came before it
    FAILED = "failed"  # the server answered one of its requests with an error
    COMMITTED = "committed"  # its commit point answered: committed
    ROLLED_BACK = "rolled back"  # its commit point answered: rolled back (a ROLLBACK)
    UNANSWERED = "unanswered"  # its commit point was sent, its answer never came
    NO_COMMIT = "no commit"  # it sent no request that commits: its transaction dies


@dataclass
class Progress:
    """What the server has answered in the current interaction, kept up to date as each message
    arrives, so that after a lost connection the engine knows what was confirmed."""

    requests: list[Request] = field(default_factory=list)
    waiting: int = 0  # the first request whose answer is not complete
    owner: int | None = None  # the step that the requests sent from now on belong to
    errors: list[dict[str, str]] = field(default_factory=list)  # ErrorResponses, FATAL included
    said: list[dict[str, str]] = field(default_factory=list)  # errors and WARNINGs, in order

    kept: int = 0  # how many requests the last compaction kept

    def request(self, kind: str, *, commits: bool = False, statements: int = 0) -> Request:
        """A request about to be written: from now on the server may have it."""
        request = Request(kind, self.owner, commits, statements)
        self.requests.append(request)
        if len(self.requests) >= 2 * self.kept + COMPACT_AFTER:
            self._compact()
        return request

    def _compact(self) -> None:
        """Forget the answered Executes that a verdict cannot tell from their successor: in a
        run of one step's Executes that succeeded and commit nothing, all but the last. A
        bulk insert sent row by row makes one request a row, so memory stays flat however many
        rows a file holds. Amortized: it runs when the requests have doubled since the last."""
        requests, waiting = self.requests, self.waiting
        kept: list[Request] = []
        for index, request in enumerate(requests[:waiting]):
            if (
                index + 1 < waiting
                and _plain(request)
                and _plain(requests[index + 1])
                and requests[index + 1].owner == request.owner
            ):
                continue
            kept.append(request)
        self.requests = kept + requests[waiting:]
        self.waiting = len(kept)
        self.kept = len(self.requests)

    @property
    def last_tag(self) -> str | None:
        """The last CommandComplete tag of the interaction."""
        for request in reversed(self.requests):
            if request.tags:
                return request.tags[-1]
        return None

    def answer(self, code: bytes, data: bytes) -> None:
        """Attribute one message from the server to the request that caused it."""
        pending = self.requests[self.waiting] if self.waiting < len(self.requests) else None
        if code in (COMMAND_COMPLETE, EMPTY_QUERY_RESPONSE, PORTAL_SUSPENDED):
            if pending is None:
                return
            pending.tags.append(data[:-1].decode("ascii", "replace") if data else "")
            if pending.kind == EXECUTE:
                pending.answered = True
                self.waiting += 1
        elif code == ERROR_RESPONSE:
            fields = fields_of(data)
            self.errors.append(fields)
            self.said.append(fields)
            if pending is None:
                return  # a FATAL between requests
            pending.error = fields
            if pending.kind == EXECUTE:
                pending.answered = True
                # The server skips everything up to the next Sync.
                self.waiting += 1
                while (
                    self.waiting < len(self.requests)
                    and self.requests[self.waiting].kind == EXECUTE
                ):
                    self.requests[self.waiting].skipped = True
                    self.waiting += 1
        elif code == READY_FOR_QUERY:
            if pending is None:
                return
            pending.status = data[:1]
            pending.answered = True
            self.waiting += 1
        elif code == NOTICE_RESPONSE:
            fields = fields_of(data)
            if fields.get("V", fields.get("S")) == "WARNING":
                self.said.append(fields)

    def verdict(self, owner: int) -> Verdict:
        """What the server said of the transaction that holds the step `owner`'s work."""
        mine = [r for r in self.requests if r.owner == owner]
        if not mine:
            return Verdict.NOT_SENT
        if all(r.skipped for r in mine):
            return Verdict.SKIPPED
        if any(r.error is not None or r.skipped for r in mine):
            return Verdict.FAILED
        points = [r for r in mine if r.commits]
        if not points:
            return Verdict.NO_COMMIT
        point = points[-1]
        if not point.confirmed():
            return Verdict.UNANSWERED
        tags = [tag for r in mine for tag in r.tags]
        return Verdict.ROLLED_BACK if tags and tags[-1] == "ROLLBACK" else Verdict.COMMITTED


def _plain(request: Request) -> bool:
    """An Execute the server answered with success, that commits nothing."""
    return (
        request.kind == EXECUTE
        and request.answered
        and request.error is None
        and not request.skipped
        and not request.commits
    )


def fields_of(data: bytes) -> dict[str, str]:
    """An ErrorResponse's or NoticeResponse's fields, its prose masked (secrets.py)."""
    return secrets.mask_fields(
        {
            s[:1].decode("ascii", "replace"): s[1:].decode("utf-8", "replace")
            for s in data.split(b"\x00")
            if s
        }
    )
