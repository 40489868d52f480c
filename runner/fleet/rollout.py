"""A rollout: the same plans over a fleet's targets, each target a run of its own on its own
connection (runner/fleet/target_run.py), at most `parallel` of them at once.

The order is the targets' as given (the file's, after --only and --shard), and every phase
starts its targets in that order: the pre-flight rehearsal of all of them (--rehearse-first),
then the first `canary` targets alone, then the rest if every canary applied or was skipped.
After `max_failures` targets failed (or ended in doubt), no other target starts; those
running finish and report. A target past its deadline is asked to stop (its statement
cancelled, as Ctrl-C does for one database); one that still has not stopped GRACE seconds
later has its socket shut, so a silent server never holds the rollout. Ctrl-C or SIGTERM stops
starting targets and stops the running ones the same way; a second one returns at once with
what is known (the running targets: "unknown").
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from ..report import PlanResult, RunResult
from ..run import interrupts
from .pool import Pool
from .results import (
    SUCCEEDED,
    FleetEvents,
    FleetResult,
    Options,
    TargetResult,
    exit_code,
    signal_code,
)
from .targets import FleetTarget

__all__ = ["FleetEvents", "FleetResult", "Options", "TargetResult", "rollout"]


def rollout(
    loaded: Sequence[tuple[Any, dict[str, object]]],
    targets: Sequence[FleetTarget],
    options: Options,
    events: FleetEvents | None = None,
    *,
    version: str,
    handle_signals: bool = False,
) -> FleetResult:
    """Run the plans (load_plans's) on every target as `options` say; the result says, per
    target, what its ledger says."""
    events = events or FleetEvents()
    fleet = FleetResult(
        [
            TargetResult(t, i, RunResult([PlanResult(plan) for plan, _ in loaded]))
            for i, t in enumerate(targets)
        ],
        options,
    )
    started = time.monotonic()
    events.started(fleet)
    pool = Pool(fleet, loaded, events, version)
    with interrupts.install() if handle_signals else _Nothing():
        interrupts.arm(pool.stop_all)
        try:
            _phases(fleet, pool)
        except interrupts.Abandoned as again:
            pool.abandon()
            fleet.stopped = f"stopped at once ({interrupts.name(again.signum)} again)"
            _leave(fleet.targets, fleet.stopped)
            fleet.exit_code = signal_code(again.signum)
        else:
            fleet.exit_code = exit_code(fleet)  # while a signal's stop is still known
    fleet.seconds = time.monotonic() - started
    return fleet


class _Nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *_: object) -> None:
        return None


def _phases(fleet: FleetResult, pool: Pool) -> None:
    options, targets = fleet.options, fleet.targets
    if options.rehearse_first:
        pool.run(targets, rehearse=True)
        failed = [t for t in targets if t.rehearsal != "ok"]
        if failed or pool.stopped:
            fleet.stopped = pool.stopped or (
                f"the pre-flight rehearsal failed on {len(failed)} of {len(targets)} targets, "
                "so none was changed"
            )
            _leave(targets, fleet.stopped)
            return
    canaries, rest = targets[: options.canary], targets[options.canary :]
    for target in canaries:
        target.canary = True
    if canaries:
        pool.run(canaries)
        bad = [t for t in canaries if t.status not in SUCCEEDED]
        if bad and not pool.stopped:
            pool.stopped = f"canary {bad[0].target.name} did not apply ({bad[0].status})"
    if not pool.stopped:
        pool.run(rest)
    fleet.stopped = pool.stopped
    _leave(targets, pool.stopped)


def _leave(targets: Sequence[TargetResult], why: str | None) -> None:
    for target in targets:
        if target.status == "not run" and target.why is None:
            target.why = why
