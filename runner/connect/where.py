"""Where a command connects: a URL from the flag, the environment or ./.env; else the
embedded server, started. One place for `run`, `status`, `rehearse` and `db url`."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

from ..errors import SqlPlanError
from .target import Target


def state_dir(data_dir: str | None, environ: Mapping[str, str] | None = None) -> Path:
    """Where the embedded PostgreSQL keeps its state: `data_dir`, else $SQLPLAN_DATA_DIR,
    else ./.sqlplan."""
    from .embedded import default_state_dir

    environ = os.environ if environ is None else environ
    return Path(data_dir) if data_dir else default_state_dir(Path.cwd(), environ)


def open_target(
    database_url: str | None,
    data_dir: str | None = None,
    environ: Mapping[str, str] | None = None,
    notify: Callable[[str], None] | None = None,
) -> Target:
    """Where to connect: `database_url`, else DATABASE_URL from `environ` or ./.env; else the
    embedded server, started if it is not running. ConfigError for a URL that cannot work."""
    from .target import resolve_target

    environ = os.environ if environ is None else environ
    notify = notify or (lambda _: None)
    target = resolve_target(database_url, environ, Path.cwd())
    if target is None:
        from .embedded import EmbeddedServer

        return EmbeddedServer(state_dir(data_dir, environ)).ensure_running(notify)
    for note in target.notes:  # a password file ignored, as libpq warns of it
        notify(f"warning: {note}")
    return target


def configured_pooler(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the URL a run would use (DATABASE_URL, ./.env) names a transaction pooler;
    read, never connected to. A URL that does not parse is the run's business."""
    from .target import resolve_target

    try:
        target = resolve_target(None, os.environ if environ is None else environ, Path.cwd())
    except SqlPlanError:
        return False
    return target is not None and target.pooler
