"""`sqlplan run --targets ...`: the same plans over a fleet. The options, the terminal a rollout
is shown on (a line per target, live counts), and its reports."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

import click

from ..errors import ExitCode, SqlPlanError
from .common import exit_with, failure_text, notify, signal_code

if TYPE_CHECKING:
    from ..fleet.results import FleetEvents, FleetResult, TargetResult

F = TypeVar("F", bound=Callable[..., Any])

_OPTIONS = [
    click.option(
        "--targets",
        "targets_file",
        metavar="FILE",
        type=click.Path(dir_okay=False),
        help="Run on every database of FILE instead of one: plain lines `NAME URL|$VAR [label=value ...]`, or YAML (docs/fleets.md).",
    ),
    click.option(
        "--target",
        "target_specs",
        metavar="NAME=URL",
        multiple=True,
        help="A database of the fleet (repeatable): NAME=URL, NAME=$VAR, or a URL alone.",
    ),
    click.option(
        "--targets-from",
        metavar="SQL",
        help="The fleet is the rows of SQL (name, URL, then labels), run on --database-url (else DATABASE_URL, else the embedded server).",
    ),
    click.option(
        "--only",
        metavar="LABEL=VALUE",
        multiple=True,
        help="Only the targets with this label (repeatable: all of them).",
    ),
    click.option(
        "--shard",
        metavar="I/N",
        help="Only shard I of N: a stable share of the targets, by a hash of each name, so that N CI jobs cover the fleet once.",
    ),
    click.option(
        "--parallel",
        metavar="N",
        type=click.IntRange(1, 512),
        default=4,
        show_default=True,
        help="At most this many targets (connections) at once.",
    ),
    click.option(
        "--canary",
        metavar="K",
        type=click.IntRange(0),
        default=0,
        show_default=True,
        help="Run the first K targets alone first; the rest only if all K applied (or were applied before).",
    ),
    click.option(
        "--max-failures",
        metavar="F",
        type=click.IntRange(0),
        default=1,
        show_default=True,
        help="Start no other target once this many failed or ended in doubt (those running finish); 0: no limit.",
    ),
    click.option(
        "--target-timeout",
        metavar="DURATION",
        default="10min",
        show_default=True,
        help="Each target's deadline: past it, its statement is cancelled and the target stops and fails (5s later, its connection is shut); 0: none.",
    ),
    click.option(
        "--rehearse-first",
        is_flag=True,
        help="Rehearse the plans on every target (rolled back) before any target commits; one failed rehearsal and no target changes.",
    ),
]


def fleet_options(function: F) -> F:
    for option in reversed(_OPTIONS):
        function = option(function)
    return function


def target_options(function: F) -> F:
    """Which targets, and how many at once (`status --targets`)."""
    for option in reversed(_OPTIONS[:6]):
        function = option(function)
    return function


def wanted(options: dict[str, Any]) -> bool:
    """Whether the command line names a fleet."""
    return bool(options["targets_file"] or options["target_specs"] or options["targets_from"])


def refuse_strays(options: dict[str, Any]) -> None:
    """Rollout options without a fleet are a mistake, not something to ignore."""
    given = [
        name
        for name, default in (
            ("only", ()), ("shard", None), ("parallel", 4), ("canary", 0),
            ("max_failures", 1), ("target_timeout", "10min"), ("rehearse_first", False),
        )
        if options[name] not in (default, None) and options[name] != default
    ]  # fmt: skip
    if given:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        raise click.UsageError(
            f"{flags}: only with a fleet (--targets, --target or --targets-from)"
        )


def seconds_of(text: str) -> float | None:
    """--target-timeout: a duration (5s, 500ms, 10min, 1h; digits: seconds); 0: none."""
    import re

    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|min|h)?\s*", text)
    if match is None:
        raise click.BadParameter(
            f"{text!r} is not a duration (5s, 500ms, 10min, 1h; 0: none)",
            param_hint="--target-timeout",
        )
    value = float(match[1]) * {"ms": 0.001, "s": 1, "min": 60, "h": 3600}[match[2] or "s"]
    return value or None


def run_fleet(paths: tuple[str, ...], common: dict[str, Any], options: dict[str, Any]) -> None:
    """`run` over a fleet: the targets read, the rollout, its reports, its exit."""
    from .. import api
    from ..fleet.results import FleetResult, Options

    report_format = common["report_format"]
    rollout = Options(
        parallel=options["parallel"], canary=options["canary"],
        max_failures=options["max_failures"], deadline=seconds_of(options["target_timeout"]),
        rehearse_first=options["rehearse_first"], pipeline=not common["no_pipeline"],
        allow_changed=common["allow_changed"], take_over=common["take_over"],
        settings=common["settings"], connect_retries=common["connect_retries"],
        connect_timeout=common["connect_timeout"],
    )  # fmt: skip
    if common["keep_going"]:
        raise click.UsageError(
            "--keep-going: not with a fleet (each target stops at its first failure)"
        )
    if common["dry_run"]:
        raise click.UsageError("--dry-run: not with a fleet (sqlplan show shows the plans)")
    fleet = FleetResult([], rollout)
    terminal = _Terminal(json=report_format == "json")
    try:
        try:
            loaded = api.load_plans(paths, vars=common["var"], vars_files=common["vars_files"])
            targets = api.fleet_targets(
                targets_file=options["targets_file"], targets=options["target_specs"],
                targets_from=options["targets_from"], database_url=common["database_url"],
                data_dir=common["data_dir"], only=options["only"], shard=options["shard"],
                connect_retries=common["connect_retries"],
                connect_timeout=common["connect_timeout"],
            )  # fmt: skip
        except SqlPlanError as e:
            fleet.fail(e)
        else:
            _pooler_warnings(loaded, targets)
            fleet = api.run_fleet_loaded(
                loaded, targets, rollout, events=cast("FleetEvents", terminal),
                handle_signals=True,
            )  # fmt: skip
    except BaseException as stopped:
        from ..run.interrupts import Abandoned

        if isinstance(stopped, (Abandoned, KeyboardInterrupt)):
            fleet.exit_code = signal_code(getattr(stopped, "signum", 2))
        elif not isinstance(stopped, SystemExit):
            fleet.exit_code = ExitCode.INTERNAL
        raise
    finally:
        _reports(fleet, report_format, common["junit_file"], common["summary_file"], terminal)
    if fleet.error is not None:
        where = getattr(fleet.error, "position", None)  # a targets file's line and column
        said = f"{where}: error: {fleet.error.message}" if where else failure_text(fleet.error)
        click.echo(said, err=True)
    exit_with(fleet.exit_code)


def _pooler_warnings(loaded: Any, targets: Any) -> None:
    """What in the plans a transaction pooler breaks, said once for the targets behind one."""
    import os

    from ..connect.target import parse_target
    from ..review.pooler import POOLER_CODES
    from ..review.warnings import warnings

    pooled = 0
    for target in targets:
        try:
            pooled += parse_target(target.url, source=target.name, environ=os.environ).pooler
        except SqlPlanError:
            continue  # the target's own connection says what is wrong with its URL
    if not pooled:
        return
    for plan, _ in loaded:
        for d in warnings(plan, pooler=True):
            if d.code in POOLER_CODES:
                click.echo(
                    f"{d.position}: warning: {d.message} [{d.code}] "
                    f"({pooled} target{'s' if pooled > 1 else ''} behind a transaction pooler)",
                    err=True,
                )


def _reports(
    fleet: FleetResult, format: str, junit: str | None, summary: str | None, terminal: _Terminal
) -> None:
    from ..fleet import report

    terminal.flush()
    sys.stdout.flush()
    if fleet.error is None:
        for line in report.summary_lines(fleet):
            notify(line)
    if format == "json":
        click.echo(report.json_text(fleet))
    elif format == "github":
        for target in fleet.targets:
            said = report.target_failure(target)
            if target.status in ("failed", "in doubt", "unknown") and said:
                from ..output import workflow_command

                first = said.splitlines()[0]
                click.echo(
                    workflow_command(
                        "error", f"{target.target.name}: {first}", title="sqlplan fleet"
                    )
                )
    for problem in report.write_files(junit, summary, fleet):
        notify(f"warning: could not write a report: {problem}")


class _Terminal:
    """A rollout on a terminal: each target's lines once it is over (its plans' own lines on
    standard output, `NAME: line`; how it ended on standard error), and a live line of counts
    that is redrawn; off a terminal, a line of counts every PLAIN_EVERY seconds."""

    PLAIN_EVERY = 10.0

    def __init__(self, json: bool) -> None:
        self.json = json
        self.live = sys.stderr.isatty()
        self.drawn = False
        self.last = time.monotonic()
        self.began = time.monotonic()
        self.held: dict[int, TargetResult] = {}
        self.next = 0  # the first target whose lines are not shown yet

    def started(self, fleet: FleetResult) -> None:
        from ..fleet.report import plan_of_rollout

        self.began = time.monotonic()
        notify(plan_of_rollout(fleet))

    def target_started(self, target: TargetResult) -> None:
        return None

    def target_finished(self, target: TargetResult) -> None:
        """A target's lines, in the targets' order: held back until those before it are
        over, so that the same rollout prints the same text however its targets interleave."""
        self.clear()
        if target.rehearsal is not None and target.status == "not run":
            said = "ok" if target.rehearsal == "ok" else f"failed: {target.rehearsal}"
            notify(f"target {target.target.name}: rehearsal {said}")
            return
        self.held[target.index] = target
        while self.next in self.held:
            self._show(self.held.pop(self.next))
            self.next += 1

    def flush(self) -> None:
        """The rollout is over: what is held back (behind a target never started) is shown."""
        self.clear()
        for index in sorted(self.held):
            self._show(self.held.pop(index))

    def _show(self, target: TargetResult) -> None:
        from ..fleet.report import target_failure, target_line

        name = target.target.name
        if not self.json:
            for result in target.run.plans:
                for line in result.output:
                    for piece in line.split("\n"):
                        click.echo(f"{name}: {piece}")
        for note in target.notices:
            notify(f"[{name}] {note}")
        for position, message, code in target.warnings:
            notify(f"[{name}] {position}: warning: {message} [{code}]")
        notify(target_line(target))
        if target.status not in ("applied", "skipped"):
            failed = target_failure(target)
            if failed:
                click.echo("\n".join(f"  {line}" for line in failed.splitlines()), err=True)

    def tick(self, fleet: FleetResult, running: int) -> None:
        now = time.monotonic()
        if not self.live and now - self.last < self.PLAIN_EVERY:
            return
        done = sum(t.status != "not run" or t.rehearsal is not None for t in fleet.targets)
        total = len(fleet.targets)
        failed = fleet.count("failed", "in doubt", "unknown")
        took = now - self.began
        rate = done / took if took > 0 else 0.0
        eta = f", about {(total - done) / rate:.0f} s left" if rate > 0 and done < total else ""
        text = f"targets: {done} of {total} done, {failed} failed, {running} running, {rate:.1f}/s{eta}"
        self.last = now
        if self.live:
            click.echo(f"\r\x1b[2K{text}", err=True, nl=False)
            self.drawn = True
        else:
            notify(text)

    def notice(self, text: str) -> None:
        self.clear()
        notify(text)

    def clear(self) -> None:
        if self.drawn:
            click.echo("\r\x1b[2K", err=True, nl=False)
            self.drawn = False
