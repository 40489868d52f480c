"""What a run tells as it goes (api.run_plans' `events`): kept apart from the API so that the
command can define how a terminal shows a run without importing what running needs."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .errors import Position
    from .report import PlanResult, RunResult


class Events:
    """What a run tells as it goes. Every method does nothing here: subclass and override
    what you want to see. `line`, `progress` and `warning` come from the running plan."""

    def notice(self, text: str) -> None:
        """A line about the run itself: the embedded server starting, a connection retry, a
        warning about the URL."""

    def warning(self, position: Position, message: str, code: str) -> None:
        """A warning at a plan's line: what the server raised as a step ran, what a
        transaction pooler breaks."""

    def loaded(self, run: RunResult) -> None:
        """Every plan is valid and `run.plans` lists them, none run yet; nothing was sent.
        `run` is the object run_plans returns, filled in as the plans run."""

    def plan_started(self, result: PlanResult, index: int, count: int) -> None:
        """Plan `index` (from 0) of `count` is about to run."""

    def line(self, text: str) -> None:
        """One line of the running plan's own output (what `sqlplan run` prints)."""

    def progress(self, label: str, done: int, total: int) -> None:
        """How far a bulk insert is; done == total once it is over."""

    def plan_finished(self, result: PlanResult, index: int, count: int) -> None:
        """The plan ended: `result.status` is ok, failed, refused or skipped."""

    def plan_not_run(self, result: PlanResult) -> None:
        """A failure stopped the run before this plan."""
