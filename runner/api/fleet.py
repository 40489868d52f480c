"""Fleets: the same plans over many databases, as `sqlplan run --targets` does it."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..errors import SqlPlanError
from .loading import Vars, load_plans

if TYPE_CHECKING:
    from ..fleet.results import FleetEvents, FleetResult, Options
    from ..fleet.targets import FleetTarget
    from .loading import LoadedPlan


def fleet_targets(
    *,
    targets_file: str | None = None,
    targets: Sequence[str] = (),
    targets_from: str | None = None,
    database_url: str | None = None,
    data_dir: str | None = None,
    environ: Mapping[str, str] | None = None,
    only: Sequence[str] = (),
    shard: str | None = None,
    connect_retries: int = 3,
    connect_timeout: float | None = None,
) -> list[FleetTarget]:
    """The targets of a rollout, in the order given: a targets file's (plain lines or YAML),
    then each `targets` (NAME=URL, NAME=$VAR), then the rows of `targets_from` (a query run on
    `database_url`, else DATABASE_URL, else the embedded server: name, URL, labels); then
    those with every `only` label, in `shard` (I/N). TargetsError (exit 4) for a source that
    cannot be used; a target named twice among them all is one."""
    from ..fleet import targets as fleet
    from ..secrets import texts, use

    env = os.environ if environ is None else environ
    found: list[FleetTarget] = []
    if targets_file is not None:
        found += fleet.read(targets_file, env)
    found += fleet.from_options(targets, env)
    if targets_from is not None:
        found += fleet.from_rows(
            _rows(targets_from, database_url, data_dir, env, connect_retries, connect_timeout),
            "--targets-from",
        )
    seen: dict[str, object] = {}
    for target in found:
        if target.name in seen:
            raise fleet.TargetsError(f"target {target.name} is given twice")
        seen[target.name] = target
    chosen = fleet.select(found, only, shard)
    # a server's text that quotes a target's password is masked, as a secret var's is
    from ..connect.target import parse_url

    passwords = []
    for target in found:
        try:
            password = parse_url(target.url, source=target.name).get("password")
        except SqlPlanError:
            continue  # the target's own connection says what is wrong with its URL
        if password is not None and len(password[0]) >= 4:
            passwords.append(password[0])
    use((*texts(), *passwords))
    return chosen


def _rows(  # noqa: PLR0917  (fleet_targets's options, passed on)
    sql: str,
    database_url: str | None,
    data_dir: str | None,
    environ: Mapping[str, str],
    retries: int,
    timeout: float | None,
) -> list[list[object]]:
    from ..connect.connection import RetryPolicy, close, connect
    from ..connect.where import open_target
    from ..fleet.targets import TargetsError
    from ..run import wire

    target = open_target(database_url, data_dir, environ)
    con = connect(target, RetryPolicy(retries, timeout))
    try:
        return [list(row) for row in wire.extended(con, sql, [()], text_rows=True).rows]
    except wire.ServerFailure as e:
        raise TargetsError(
            f"--targets-from: the query failed: {e.fields.get('M', '')} [{e.fields.get('C', '')}]"
        ) from None
    finally:
        close(con)


def run_fleet(
    paths: Sequence[str | os.PathLike[str]],
    targets: Sequence[FleetTarget],
    options: Options | None = None,
    *,
    vars: Vars | None = None,
    vars_files: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
    events: FleetEvents | None = None,
    handle_signals: bool = False,
) -> FleetResult:
    """Validate the plans, then run them on every target (fleet_targets's), each target on a
    connection of its own, as `options` say (fleet.results.Options: parallel, canary,
    max_failures, deadline, rehearse_first, ...). The result has a run per target, each as
    run_plans returns it for one database."""
    from ..fleet.results import FleetResult, Options

    options = options or Options()
    try:
        loaded = load_plans(paths, vars=vars, vars_files=vars_files, environ=environ)
    except SqlPlanError as e:
        fleet = FleetResult([], options)
        fleet.fail(e)
        return fleet
    return run_fleet_loaded(loaded, targets, options, events=events, handle_signals=handle_signals)


def run_fleet_loaded(
    loaded: Sequence[LoadedPlan],
    targets: Sequence[FleetTarget],
    options: Options,
    *,
    events: FleetEvents | None = None,
    handle_signals: bool = False,
) -> FleetResult:
    """run_fleet for plans load_plans returned."""
    from ..fleet.rollout import rollout

    return rollout(
        [(plan, values) for plan, values in loaded],
        targets,
        options,
        events,
        version=__version__,
        handle_signals=handle_signals,
    )


def fleet_status(
    paths: Sequence[str | os.PathLike[str]],
    targets: Sequence[FleetTarget],
    *,
    parallel: int = 4,
    connect_retries: int = 1,
    connect_timeout: float | None = None,
) -> tuple[list[Any], list[Any]]:
    """What each target's sqlplan.history says of each plan, as `sqlplan status --targets`:
    (the plans, a fleet.status.TargetHistory per target: a cell per plan, or the error that
    kept it unread). PlanInvalid for invalid plans; nothing is changed."""
    from ..fleet.status import read_fleet
    from .history import valid_plans

    plans = valid_plans(paths)
    rows = read_fleet(
        plans, targets, parallel=parallel, connect_retries=connect_retries,
        connect_timeout=connect_timeout,
    )  # fmt: skip
    return plans, rows
