"""Statement execution at the protocol level, so each statement costs the fewest round trips.

pg8000's `run()` with parameters takes three round trips (Parse, Describe, Bind/Execute, each
followed by Sync). Here a parameterised statement is one flight: Parse, Bind, Describe, Execute,
Sync; a bulk insert sends Parse once and Bind/Execute for every row of a chunk before its Sync.
Everything between two Syncs is one implicit transaction, which is what makes a one-chunk bulk
insert atomic without BEGIN and COMMIT. pg8000's own message handlers decode the replies.
"""

from __future__ import annotations

import contextlib
import struct
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pg8000.core import (
    COMMAND_COMPLETE,
    COPY_IN_RESPONSE,
    DATA_ROW,
    ERROR_RESPONSE,
    NOTICE_RESPONSE,
    NOTIFICATION_RESPONSE,
    PARAMETER_STATUS,
    READY_FOR_QUERY,
    ROW_DESCRIPTION,
    Context,
    _flush,
    _read,
    _write,
)
from pg8000.exceptions import DatabaseError, InterfaceError

from .. import secrets
from ..plan.values import sql_text
from . import interrupts
from .progress import EXECUTE, QUERY, SYNC, Progress

_BOOL_OID = 16
_HEADER = struct.Struct("!ci")
_SYNC = b"S\x00\x00\x00\x04"
_EXECUTE_ALL = b"E\x00\x00\x00\x09\x00\x00\x00\x00\x00"
_DESCRIBE_PORTAL = b"D\x00\x00\x00\x06P\x00"
_COPY_DONE = b"c\x00\x00\x00\x04"
_FLUSH = b"H\x00\x00\x00\x04"


class Session(Protocol):
    """The connection the run side drives: pg8000's native Connection, logged in by sqlplan
    (connect/connection.py), as far as sqlplan reads and writes it. Every use on the run side
    is held to this by mypy; a new one is written here first."""

    _sock: Any  # the buffered stream of the socket: what is sent and read, message by message
    _client_encoding: str  # how text is encoded on the wire
    _transaction_status: bytes | None  # the last ReadyForQuery's: I, T or E
    message_types: dict[bytes, Callable[[bytes, Any], None]]  # pg8000's message handlers
    parameter_statuses: dict[str, str]  # ParameterStatus: server_version, ...
    notices: Any  # the server's notices and warnings since they were last taken
    sqlplan_progress: Any  # what the server has answered in the current interaction


@dataclass
class Outcome:
    columns: tuple[str, ...] = ()
    rows: list[list[Any]] = field(default_factory=list)
    row_count: int = -1  # rows affected or returned, summed; -1 when no command reported one
    completed: int = 0  # commands that completed in the last flight
    notices: list[dict[bytes, bytes]] = field(default_factory=list)  # pipeline(): its own notices

    def count(self, returned: bool) -> int:
        """A step's count: the rows returned (`returned`: a query), else the rows affected."""
        return len(self.rows) if returned else max(self.row_count, 0)


class ConnectionLost(Exception):
    """The connection broke (reset, closed, timed out) in the middle of an interaction."""

    def __init__(self, progress: Progress, cause: BaseException) -> None:
        super().__init__(str(cause.__cause__ or cause))
        self.progress = progress
        self.cause = cause

    @property
    def server_said(self) -> dict[str, str] | None:
        """The last error or warning the server sent before the loss (a FATAL shutdown, say)."""
        return self.progress.said[-1] if self.progress.said else None


def track(con: Session, owner: int | None = None) -> Progress:
    """Start recording what the server answers on `con`; requests belong to step `owner`."""
    progress = Progress(owner=owner)
    con.sqlplan_progress = progress
    return progress


def current(con: Session) -> Progress:
    """What the server has answered in the current interaction."""
    return _progress(con)


def _progress(con: Session) -> Progress:
    progress = getattr(con, "sqlplan_progress", None)
    if progress is None:
        progress = track(con)
    return progress


def _receive(con: Session) -> tuple[bytes, bytes]:
    """The next message (code, payload), attributed in the interaction's Progress."""
    progress = _progress(con)
    try:
        code, length = _HEADER.unpack(_read(con._sock, 5))
        data = _read(con._sock, length - 4)
    except (InterfaceError, OSError) as e:
        raise ConnectionLost(progress, e) from None
    progress.answer(code, data)
    return code, data


def _salvage(con: Session, progress: Progress) -> None:
    """After a failed write: what the server said before it hung up (a FATAL, say) is often
    still waiting in the receive buffer. Read it, for a second at most."""
    sock = getattr(con, "_usock", None)
    if sock is None:
        return
    deadline = time.monotonic() + 1.0
    with contextlib.suppress(Exception):
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            code, length = _HEADER.unpack(_read(con._sock, 5))
            progress.answer(code, _read(con._sock, length - 4))


def _put(con: Session, data: bytes) -> None:
    try:
        _write(con._sock, data)
    except (InterfaceError, OSError) as e:
        progress = _progress(con)
        _salvage(con, progress)
        raise ConnectionLost(progress, e) from None


def _push(con: Session) -> None:
    """Flush what was written."""
    try:
        _flush(con._sock)
    except (InterfaceError, OSError) as e:
        progress = _progress(con)
        _salvage(con, progress)
        raise ConnectionLost(progress, e) from None


class ServerFailure(Exception):
    """An ErrorResponse, with how many commands of the flight completed before it."""

    def __init__(self, fields: dict[str, str], completed: int) -> None:
        super().__init__(fields.get("M", "server error"))
        self.fields = fields
        self.completed = completed


def reason(error: ServerFailure | ConnectionLost) -> str:
    """What went wrong with a read sqlplan made for itself, in a few words."""
    if isinstance(error, ServerFailure):
        return f"{error.fields.get('M', '')} [{error.fields.get('C', '')}]"
    return f"the connection was lost ({error})"


def server_major(con: Session) -> int:
    """The server's major version (18 for "18.6", 15 for "15.18 (Debian ...)"); 0 if unknown."""
    version = str(con.parameter_statuses.get("server_version", ""))
    digits = version.split(".", 1)[0].split(" ", 1)[0]
    return int(digits) if digits.isdigit() else 0


def csv_end_marker(con: Session) -> bool:
    """Whether the server's COPY (FORMAT csv) ends the data at a line holding only \\. (before
    PostgreSQL 18); sqlplan's own CSV reader must do the same."""
    return 0 < server_major(con) < 18


def transaction_status(con: Session) -> bytes:
    """b'I' idle, b'T' in a transaction block, b'E' in a failed one."""
    return bytes(con._transaction_status or b"I")


def simple(con: Session, sql: str, *, commits: bool = False, statements: int = 0) -> Outcome:
    """The simple query protocol: any number of statements, one round trip. `commits`: its
    answer says whether the current step's transaction committed (`statements` of them: all
    their CommandCompletes say so, the last coming after the commit)."""
    _progress(con).request(QUERY, commits=commits, statements=statements)
    _send(con, _message(b"Q", _cstr(con, sql)))
    return _drain(con, sql, text_rows=False)


def extended(
    con: Session,
    sql: str,
    param_sets: Sequence[Sequence[object]],
    *,
    text_rows: bool = False,
    before: str | None = None,
    after: str | None = None,
    commits: bool | None = None,
) -> Outcome:
    """One flight: Parse, then Bind/Execute for each parameter set, then one Sync.

    `before` and `after` are simple queries sent in the same flight (BEGIN, COMMIT): after an
    error the server skips to the Sync, and a COMMIT of the failed transaction rolls it back.
    What commits the current step's transaction: `after` if there is one, else the Sync when
    nothing before it opened a block (`commits` says otherwise).
    """
    progress = _progress(con)
    if commits is None:
        commits = after is None and before is None and transaction_status(con) == b"I"
    buffer = bytearray()
    if before:
        progress.request(QUERY)
        buffer += _message(b"Q", _cstr(con, before))
    buffer += _message(b"P", b"\x00" + _cstr(con, sql) + b"\x00\x00")
    for index, values in enumerate(param_sets):
        progress.request(EXECUTE)
        buffer += _bind(con, values)
        if index == 0:
            buffer += _DESCRIBE_PORTAL
        buffer += _EXECUTE_ALL
    progress.request(SYNC, commits=commits and not after)
    buffer += _SYNC
    if after:
        progress.request(QUERY, commits=True, statements=1)
        buffer += _message(b"Q", _cstr(con, after))
    _send(con, bytes(buffer))
    failure: ServerFailure | None = None
    outcome = Outcome()
    for text, rows in ((before, False), (sql, text_rows), (after, False)):
        if text is None:
            continue
        try:
            result = _drain(con, text, text_rows=rows)
        except ServerFailure as e:
            failure = failure or e
            continue
        if text is sql:
            outcome = result
    if failure is not None:
        raise failure
    return outcome


@dataclass(frozen=True)
class Piece:
    """One statement of a pipeline: Parse, then Bind/Execute for each parameter set (and the
    COPY data, for a COPY ... FROM STDIN)."""

    sql: str
    param_sets: Sequence[Sequence[object]] = ((),)
    rows: bool = False  # Describe it, and keep its rows as text (a query)
    copy: Iterable[bytes] | None = None
    quiet: bool = False  # sqlplan's own statement: its notices are dropped
    owner: int | None = None  # the step it belongs to
    commits: bool = False  # it commits its step's transaction (a COMMIT)


class PipelineFailure(ServerFailure):
    """A pipeline's statement failed: the server skipped every statement after it."""

    def __init__(self, failure: ServerFailure, index: int, outcomes: list[Outcome]) -> None:
        super().__init__(failure.fields, failure.completed)
        self.index = index  # of the piece that failed
        self.outcomes = outcomes  # of the pieces before it, and the failed one's notices last


def pipeline(con: Session, pieces: Sequence[Piece], *, commits: bool = False) -> list[Outcome]:
    """Every piece in one flight ended by one Sync: one round trip for all of them.

    Between two Syncs the statements share one transaction, unless the pieces themselves say
    COMMIT; after an error the server ignores everything up to the Sync, so the statements after
    a failed one never run. `commits`: the Sync commits the last piece's step.
    """
    progress = _progress(con)
    for piece in pieces:
        progress.owner = piece.owner
        buffer = bytearray(_message(b"P", b"\x00" + _cstr(con, piece.sql) + b"\x00\x00"))
        for index, values in enumerate(piece.param_sets):
            progress.request(EXECUTE, commits=piece.commits)
            buffer += _bind(con, values)
            if index == 0 and piece.rows:
                buffer += _DESCRIBE_PORTAL
            buffer += _EXECUTE_ALL
        if piece.commits:
            # The server holds its answers until the Sync; a Flush sends the COMMIT's at
            # once, so that a later step running long does not leave this one in doubt.
            buffer += _FLUSH
        _put(con, bytes(buffer))
        if piece.copy is not None:
            for chunk in piece.copy:
                _copy_data(con, chunk)
            _put(con, _COPY_DONE)
    progress.request(SYNC, commits=commits)
    _put(con, _SYNC)
    _push(con)
    return _drain_pipeline(con, pieces)


def _drain_pipeline(con: Session, pieces: Sequence[Piece]) -> list[Outcome]:
    handlers: dict[bytes, Callable[[bytes, Any], None]] = con.message_types
    outcomes: list[Outcome] = []
    index, completed = 0, 0
    context = Context(pieces[0].sql)
    notices: list[dict[bytes, bytes]] = []
    failed: PipelineFailure | None = None
    while True:
        code, data = _receive(con)
        if code == READY_FOR_QUERY:
            handlers[code](data, context)
            break
        if code in (PARAMETER_STATUS, NOTIFICATION_RESPONSE):
            handlers[code](data, context)  # about the session, not about a piece
            continue
        if failed is not None or code == COPY_IN_RESPONSE:
            continue  # nothing after an error runs; COPY's data went with its Execute
        if index >= len(pieces):
            # after the last piece: a notice of the commit at the Sync, say
            if code == NOTICE_RESPONSE and outcomes and not pieces[-1].quiet:
                outcomes[-1].notices.append({s[0:1]: s[1:] for s in data.split(b"\x00")})
            continue
        piece = pieces[index]
        if code == NOTICE_RESPONSE:
            if not piece.quiet:
                notices.append({s[0:1]: s[1:] for s in data.split(b"\x00")})
            continue
        if code == DATA_ROW and not piece.rows:
            continue  # a statement whose rows nobody reads
        handlers[code](data, context)
        if code == ROW_DESCRIPTION:
            _text_columns(context)
        elif code == ERROR_RESPONSE:
            outcomes.append(Outcome(notices=notices))
            failed = PipelineFailure(_failure(context.error, completed), index, outcomes)
        elif code == COMMAND_COMPLETE:
            completed += 1
            if completed == len(piece.param_sets):
                outcomes.append(_outcome(context, completed, notices))
                index, completed, notices = index + 1, 0, []
                if index < len(pieces):
                    context = Context(pieces[index].sql)
    if failed is not None:
        raise failed
    return outcomes


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
COPY_CHUNK_BYTES = 1 << 18  # CopyData messages of about 256 KiB: streamed, never the whole load


def copy_text(con: Session, batches: Iterable[Sequence[Sequence[object]]]) -> Iterator[bytes]:
    """Rows, given in batches, as COPY text-format data in chunks of about COPY_CHUNK_BYTES,
    each value the text a bind parameter carries (values.sql_text).

    A row of text (and NULLs) is its values joined, unescaped, a batch at a time, and each chunk
    is checked once for what would have needed an escape: more backslashes, tabs or line
    breaks than the NULLs, the separators and the rows account for, or a carriage return. Then
    the rows with what the chunk has too many of are written again, escaped."""
    encoding = con._client_encoding
    buffer: list[str] = []
    held: list[Sequence[object]] = []
    size = slashes = tabs = 0
    join = "\t".join
    for rows in batches:
        try:
            lines = list(map(join, rows))  # type: ignore[arg-type]
        except TypeError:  # a NULL, or a value of another type
            lines, added = _joined(rows)
            slashes += added
        buffer += lines
        held += rows
        tabs += sum(map(len, rows)) - len(rows)
        size += sum(map(len, lines)) + len(lines)
        if size >= COPY_CHUNK_BYTES:
            yield _copy_chunk(buffer, held, slashes, tabs).encode(encoding)
            buffer, held, size, slashes, tabs = [], [], 0, 0, 0
    if buffer:
        yield _copy_chunk(buffer, held, slashes, tabs).encode(encoding)


def _joined(rows: Sequence[Sequence[object]]) -> tuple[list[str], int]:
    """Each row's values joined, a NULL as \\N and a value of another type escaped already;
    and the backslashes that put there."""
    lines: list[str] = []
    slashes = 0
    for row in rows:
        try:
            line = "\t".join(row)  # type: ignore[arg-type]
        except TypeError:
            try:
                line = "\t".join(["\\N" if v is None else v for v in row])  # type: ignore[misc]
                slashes += row.count(None)
            except TypeError:
                line = _copy_line(row)
                slashes += line.count("\\")
        lines.append(line)
    return lines, slashes


def _copy_chunk(lines: list[str], rows: list[Sequence[object]], slashes: int, tabs: int) -> str:
    """The lines as one chunk, the rows whose values need escapes written again escaped (each
    line looked at only for what the chunk as a whole has too many of)."""
    text = "\n".join(lines) + "\n"
    slash = text.count("\\") != slashes
    tab = text.count("\t") != tabs
    newline = text.count("\n") != len(lines)
    carriage = "\r" in text
    if not (slash or tab or newline or carriage):
        return text
    lines = [
        _copy_line(row)
        if (newline and "\n" in line)
        or (carriage and "\r" in line)
        or (tab and line.count("\t") != len(row) - 1)
        or (slash and line.count("\\") != row.count(None))
        else line
        for line, row in zip(lines, rows, strict=True)
    ]
    return "\n".join(lines) + "\n"


def _copy_line(row: Sequence[object]) -> str:
    return "\t".join(
        [
            "\\N" if v is None else (v if type(v) is str else sql_text(v)).translate(_COPY_ESCAPES)  # type: ignore[union-attr]
            for v in row
        ]
    )


def copy_in(
    con: Session,
    sql: str,
    chunks: Iterable[bytes],
    progress: Callable[[int], None] | None = None,
    *,
    commits: bool = False,
) -> Outcome:
    """COPY ... FROM STDIN in one flight: the query, the data and CopyDone without waiting for
    CopyInResponse. A COPY that fails at once makes the server ignore the data that follows.
    If `chunks` raises, CopyFail makes the server roll the COPY back before the error goes on.
    `commits`: its CommandComplete says the current step committed (no block around it)."""
    encoding = con._client_encoding
    _progress(con).request(QUERY, commits=commits, statements=1)
    _put(con, _message(b"Q", _cstr(con, sql)))
    sent = 0
    try:
        for chunk in chunks:
            sent += _copy_data(con, chunk)
            _push(con)
            if progress is not None:
                progress(sent)
            interrupts.check()  # Ctrl-C: CopyFail below, and the COPY is rolled back
    except ConnectionLost:
        raise
    except Exception as e:
        _put(con, _message(b"f", str(e).encode(encoding, "replace") + b"\x00"))
        _push(con)
        with contextlib.suppress(ServerFailure):
            _drain(con, sql, text_rows=False)
        raise
    _put(con, _COPY_DONE)
    _push(con)
    return _drain(con, sql, text_rows=False)


def _copy_data(con: Session, data: bytes) -> int:
    """One CopyData message, written (not flushed); its payload's size."""
    _put(con, b"d" + struct.pack("!i", len(data) + 4))
    _put(con, data)
    return len(data)


def _message(code: bytes, payload: bytes) -> bytes:
    return code + struct.pack("!i", len(payload) + 4) + payload


def _cstr(con: Session, text: str) -> bytes:
    return text.encode(con._client_encoding) + b"\x00"


def _bind(con: Session, values: Sequence[object]) -> bytes:
    encoding = con._client_encoding
    payload = bytearray(b"\x00\x00\x00\x00")  # unnamed portal, unnamed statement, all params text
    payload += struct.pack("!h", len(values))
    for value in map(sql_text, values):
        if value is None:
            payload += b"\xff\xff\xff\xff"
        else:
            data = value.encode(encoding)
            payload += struct.pack("!i", len(data)) + data
    payload += b"\x00\x00"  # all results as text
    return _message(b"B", bytes(payload))


def _send(con: Session, data: bytes) -> None:
    _put(con, data)
    _push(con)


def _text(value: str) -> str:
    return value


def _bool_text(value: str) -> str:
    return "true" if value == "t" else "false"


def _drain(con: Session, sql: str, *, text_rows: bool) -> Outcome:
    """Read replies up to ReadyForQuery through pg8000's handlers, counting completions."""
    context = Context(sql)
    handlers: dict[bytes, Callable[[bytes, Any], None]] = con.message_types
    completed = 0
    while True:
        code, data = _receive(con)
        if code == COPY_IN_RESPONSE:
            continue  # the data went with the query (copy_in); pg8000's handler would send it again
        handlers[code](data, context)
        if code == ROW_DESCRIPTION and text_rows:
            _text_columns(context)
        elif code == COMMAND_COMPLETE:
            completed += 1
        elif code == READY_FOR_QUERY:
            break
    if context.error is not None:
        raise _failure(context.error, completed)
    return _outcome(context, completed)


def _text_columns(context: Any) -> None:
    """Rows are shown as PostgreSQL writes them; only booleans read as true/false."""
    context.input_funcs = [
        _bool_text if c["type_oid"] == _BOOL_OID else _text for c in context.columns
    ]


def _outcome(
    context: Any, completed: int, notices: list[dict[bytes, bytes]] | None = None
) -> Outcome:
    return Outcome(
        columns=tuple(c["name"] for c in context.columns or ()),
        rows=context.rows or [],
        row_count=context.row_count,
        completed=completed,
        notices=notices or [],
    )


def _failure(error: Exception, completed: int) -> ServerFailure:
    fields = error.args[0] if isinstance(error, DatabaseError) and error.args else {}
    if not isinstance(fields, dict):
        raise error
    return ServerFailure(secrets.mask_fields(fields), completed)
