"""Fuzzing, fast profile: generated and mutated plans never end in a traceback, a diagnostic
without a position, or one past the end of the file (bench/fuzz.py runs the long profile)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fuzzing import any_plan, check_any, mutated_seed, schema_plans
from hypothesis import HealthCheck, given, settings

pytestmark = pytest.mark.slow  # the fast tier (-m "not slow") leaves it out

_FAST = settings(
    max_examples=300,
    deadline=5000,  # milliseconds: a guard against a hang, not a speed target
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)


@_FAST
@given(raw=mutated_seed())
def test_mutated_plans_get_positioned_diagnostics(raw: bytes) -> None:
    check_any(raw, Path("/nonexistent-dir/fuzz.yaml"))


@_FAST
@given(raw=schema_plans())
def test_schema_generated_plans_get_positioned_diagnostics(raw: bytes) -> None:
    check_any(raw, Path("/nonexistent-dir/fuzz.yaml"))


@_FAST
@given(raw=any_plan())
def test_any_bytes_get_positioned_diagnostics(raw: bytes) -> None:
    check_any(raw, Path("/nonexistent-dir/fuzz.yaml"))
