"""sqlplan as a library: `import sqlplan`, then load, check, run and rehearse plans
(runner/api/).

result = sqlplan.run_plans(["plans/create_table.yaml"], database_url=url)
assert result.ok, result.exit_code
"""

from runner import __version__
from runner.api import (
    CheckResult,
    Events,
    LoadedPlan,
    NotRehearsable,
    PlanResult,
    RunResult,
    check,
    history_status,
    load_plans,
    plan_files,
    rehearse,
    run_loaded,
    run_plans,
    table_stats,
)
from runner.errors import Diagnostic, ExitCode, PlanInvalid, Position, SqlPlanError, StepFailed

__all__ = [
    "CheckResult",
    "Diagnostic",
    "Events",
    "ExitCode",
    "LoadedPlan",
    "NotRehearsable",
    "PlanInvalid",
    "PlanResult",
    "Position",
    "RunResult",
    "SqlPlanError",
    "StepFailed",
    "__version__",
    "check",
    "history_status",
    "load_plans",
    "plan_files",
    "rehearse",
    "run_loaded",
    "run_plans",
    "table_stats",
]
