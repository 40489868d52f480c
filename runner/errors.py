"""The error types sqlplan raises and the exit codes they map to."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any


class ExitCode(IntEnum):
    """Process exit codes, documented in the README. Every CLI path uses one of these."""

    OK = 0
    STEP_FAILED = 1  # a step failed at run time; its transaction was rolled back
    USAGE = 2  # bad command line (click's own code for usage errors)
    INVALID_PLAN = 3  # the plan file is not valid; nothing was sent to the database
    CONFIG = 4  # bad configuration: a malformed DATABASE_URL, an unusable data directory
    CONNECTION = 5  # could not connect, or the embedded server could not start
    IN_DOUBT = 6  # the connection broke after a step's commit was sent and before its answer
    EXPECTATION = 7  # a step's result was not what its `expect` says; its transaction rolled back
    HISTORY = (
        8  # sqlplan.history refuses a `once` plan: changed since it ran, or another run holds it
    )
    UNFINISHED = 9  # a backfill stopped at its max_duration between batches; run again to resume
    INTERNAL = 70  # a bug in sqlplan (an unexpected exception); reported, never a traceback
    INTERRUPTED = 130  # Ctrl-C (SIGINT): the running statement cancelled, what committed said
    TERMINATED = 143  # SIGTERM: as Ctrl-C
    READER_LEFT = 141  # stdout's reader went away (`| head`) from a command that only prints

    def __str__(self) -> str:
        """The number, as Python 3.11 and later print an IntEnum (3.10 printed its name)."""
        return str(int(self))


@dataclass(frozen=True, order=True)
class Position:
    """A 1-based place in a source file."""

    path: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Diagnostic:
    """One problem found in a plan, at a position, with a short code."""

    position: Position
    message: str
    code: str
    severity: str = "error"
    # What the finding is about, independent of where it sits (the statement's text), from
    # which SARIF's fingerprint is made so that it survives lines moving; not compared.
    context: str = field(default="", compare=False)
    relation: str = field(default="", compare=False)  # a lock finding's table, for its grade

    def sort_key(self) -> tuple[str, int, int, str]:
        return (self.position.path, self.position.line, self.position.column, self.message)

    def __str__(self) -> str:
        return f"{self.position}: {self.severity}: {self.message} [{self.code}]"

    def to_dict(self) -> dict[str, object]:
        return {
            "path": self.position.path,
            "line": self.position.line,
            "column": self.position.column,
            "severity": self.severity,
            "code": self.code,
            "message": self.message,
        }


class SqlPlanError(Exception):
    """Base of every error sqlplan reports to a user; carries its exit code."""

    exit_code: ExitCode = ExitCode.STEP_FAILED

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class PlanInvalid(SqlPlanError):
    """The plan failed validation; `diagnostics` holds every problem, sorted."""

    exit_code = ExitCode.INVALID_PLAN

    def __init__(self, diagnostics: list[Diagnostic], partial: Any = None) -> None:
        self.diagnostics = sorted(diagnostics, key=Diagnostic.sort_key)
        self.partial = partial  # a Plan of the steps that are valid, for their review warnings
        super().__init__(f"{len(self.diagnostics)} problem(s) in the plan")


class UsageError(SqlPlanError):
    """What was asked cannot be done as asked, such as a directory with no plan files."""

    exit_code = ExitCode.USAGE


class ConfigError(SqlPlanError):
    """Configuration that cannot work: a malformed URL, an unknown sslmode, a bad path."""

    exit_code = ExitCode.CONFIG


class ConnectError(SqlPlanError):
    """The database could not be reached or refused us."""

    exit_code = ExitCode.CONNECTION

    def __init__(self, message: str, *, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class EmbeddedServerError(ConnectError):
    """The embedded PostgreSQL could not be initialised, started or stopped."""


@dataclass
class ServerError:
    """The fields of a PostgreSQL ErrorResponse that a user needs."""

    sqlstate: str
    message: str
    detail: str | None = None
    hint: str | None = None
    position: int | None = None  # 1-based character offset into the SQL sent
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_fields(cls, fields: dict[str, str]) -> ServerError:
        position = fields.get("P")
        return cls(
            sqlstate=fields.get("C", "XX000"),
            message=fields.get("M", "unknown error"),
            detail=fields.get("D"),
            hint=fields.get("H"),
            position=int(position) if position and position.isdigit() else None,
            extra={k: v for k, v in fields.items() if k in ("W", "s", "t", "c", "n")},
        )


class StepFailed(SqlPlanError):
    """A step failed while running; its transaction, if any, was rolled back."""

    exit_code = ExitCode.STEP_FAILED

    def __init__(
        self,
        message: str,
        *,
        position: Position,
        sql: str,
        sql_position: Position | None = None,
        server: ServerError | None = None,
        row_number: int | None = None,
        row_position: Position | None = None,
        rolled_back: str | None = None,
        step: int | None = None,
        difference: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message)
        self.difference = difference  # expected against actual, a line each
        self.step = step  # the number of the step that failed
        self.ledger_lines: list[str] = []  # what the server confirmed of every step
        self.in_doubt = False  # some step may or may not have committed
        self.connection_lost = False  # the connection is gone: nothing more can run on it
        self.ledger: Any = None  # the run's Ledger: each step's fate, rows and time
        self.position = position
        self.sql = sql
        self.sql_position = sql_position
        self.server = server
        self.row_number = row_number
        self.row_position = row_position
        self.rolled_back = rolled_back


class ExpectationFailed(StepFailed):
    """A step's result was not what its `expect` says."""

    exit_code = ExitCode.EXPECTATION


class RunInterrupted(StepFailed):
    """Ctrl-C or SIGTERM stopped the plan; `signum` says which."""

    def __init__(self, message: str, *, signum: int, **details: Any) -> None:
        super().__init__(message, **details)
        self.signum = signum
        codes = {15: ExitCode.TERMINATED, 2: ExitCode.INTERRUPTED}  # else: a fleet's deadline
        self.exit_code = codes.get(signum, ExitCode.STEP_FAILED)


class HistoryRefused(SqlPlanError):
    """A `once` plan's history forbids running it: it changed since it was applied, or another
    run has claimed it and not finished."""

    exit_code = ExitCode.HISTORY

    def __init__(self, message: str, *, position: Position, unfinished: bool = False) -> None:
        super().__init__(message)
        self.position = position
        self.unfinished = unfinished  # its last run never said how it ended: in doubt


def internal_error(error: BaseException) -> str:
    """An exception nobody expected, as sqlplan reports it: a bug, with what it said."""
    detail = str(error)
    detail = detail if len(detail) <= 300 else detail[:299] + "…"
    return (
        f"internal error: {type(error).__name__}: {detail} "
        "(a bug in sqlplan; please report it with the plan that caused it)"
    )
