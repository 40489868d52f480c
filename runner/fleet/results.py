"""What a rollout is asked (Options) and what it did (FleetResult: a TargetResult per target),
and what it tells as it goes (FleetEvents)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ExitCode, Position, SqlPlanError
from ..report import RunResult
from ..run import interrupts
from .targets import FleetTarget

# A target that did its part: every plan applied, or applied before.
SUCCEEDED = ("applied", "skipped")


@dataclass
class Options:
    parallel: int = 4
    canary: int = 0
    max_failures: int = 1  # 0: no limit
    deadline: float | None = 600.0  # seconds per target; None: none
    rehearse_first: bool = False
    pipeline: bool = True
    allow_changed: bool = False
    take_over: bool = False
    settings: dict[str, str] = field(default_factory=dict)
    connect_retries: int = 3
    connect_timeout: float | None = None
    keep_output: bool = True


@dataclass
class TargetResult:
    """One target of a rollout: its plans' results (a run of its own), and how it ended:
    applied, skipped (every plan was applied before), failed, in doubt, unfinished (a
    backfill stopped at its max_duration), stopped (Ctrl-C), unknown (a second Ctrl-C
    while it ran) or not run (`why`)."""

    target: FleetTarget
    index: int
    run: RunResult
    status: str = "not run"
    why: str | None = None
    canary: bool = False
    seconds: float | None = None
    rehearsal: str | None = None  # None: not rehearsed; "ok"; else what failed, and where
    timed_out: bool = False
    warnings: list[tuple[Position, str, str]] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        if self.status == "unknown":
            return int(ExitCode.IN_DOUBT)
        return int(self.run.exit_code)


@dataclass
class FleetResult:
    targets: list[TargetResult]
    options: Options
    exit_code: ExitCode = ExitCode.OK
    error: SqlPlanError | None = None  # what stopped the rollout before any target ran
    stopped: str | None = None  # why targets were left not run
    seconds: float = 0.0
    most_open: int = 0  # the most target connections open at one moment

    @property
    def ok(self) -> bool:
        return self.exit_code == ExitCode.OK

    def count(self, *statuses: str) -> int:
        return sum(t.status in statuses for t in self.targets)

    def fail(self, error: SqlPlanError) -> None:
        self.error, self.exit_code = error, error.exit_code


class FleetEvents:
    """What a rollout tells as it goes, always from the thread that called rollout()."""

    def started(self, fleet: FleetResult) -> None:
        """Every target is listed, none started."""

    def target_started(self, target: TargetResult) -> None:
        """A target connects now."""

    def target_finished(self, target: TargetResult) -> None:
        """A target ended (its status is set), or was rehearsed (`rehearsal` is set)."""

    def tick(self, fleet: FleetResult, running: int) -> None:
        """A moment passed (TICK seconds): for progress."""

    def notice(self, text: str) -> None:
        """A line about the rollout itself."""


def exit_code(fleet: FleetResult) -> ExitCode:
    """In doubt (6) first, whatever else happened; then Ctrl-C or SIGTERM (130, 143); then
    a failure (1: a target failed, or a rehearsal); then a backfill unfinished (9); else 0."""
    statuses = {t.status for t in fleet.targets}
    if statuses & {"in doubt", "unknown"}:
        return ExitCode.IN_DOUBT
    signum = interrupts.requested()
    if "stopped" in statuses or signum is not None:
        return signal_code(signum or 2)
    if "failed" in statuses or any(t.rehearsal not in (None, "ok") for t in fleet.targets):
        return ExitCode.STEP_FAILED
    if "unfinished" in statuses:
        return ExitCode.UNFINISHED
    return ExitCode.OK


def signal_code(signum: int) -> ExitCode:
    return ExitCode.TERMINATED if signum == 15 else ExitCode.INTERRUPTED
