"""sqlplan: declarative, YAML-driven SQL plans for PostgreSQL.

The library API (runner/api/; `import sqlplan` gives the same names) is loaded on first
use, so that the command starts without it."""

from __future__ import annotations

import sys
import types
from typing import Any

__version__ = "0.1.0"


def _scramp_when_used() -> None:
    """pg8000 imports scramp (and asn1crypto with it: about 15 ms, 30 on a slow machine) for a
    log-in that sqlplan does with its own code (connect/handshake.py). Until something uses
    scramp, a stand-in holds its place; the first attribute asked of it loads the real module,
    which from then on is the one imported."""
    if "scramp" in sys.modules:
        return
    stand_in = types.ModuleType("scramp")

    def load(name: str) -> Any:
        if sys.modules.get("scramp") is stand_in:
            del sys.modules["scramp"]
        import importlib

        return getattr(importlib.import_module("scramp"), name)

    stand_in.__getattr__ = load  # type: ignore[method-assign]
    sys.modules["scramp"] = stand_in


_scramp_when_used()

_API = (
    "CheckResult",
    "Events",
    "LoadedPlan",
    "NotRehearsable",
    "PlanResult",
    "RunResult",
    "check",
    "fleet_status",
    "fleet_targets",
    "history_status",
    "load_plans",
    "plan_files",
    "rehearse",
    "run_loaded",
    "run_fleet",
    "run_fleet_loaded",
    "run_plans",
    "table_stats",
)


def __getattr__(name: str) -> Any:
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
