"""The quick schema (a step's kind key picks its one branch; references written in place)
gives every document the same verdict as plan.schema.json itself: a differential test over
documents shaped like plans, valid and not."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml
from conftest import ROOT
from fuzzing import SCHEMA, _from_schema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.plan.schema import load
from runner.plan.values import Number

pytestmark = pytest.mark.slow  # the fast tier (-m "not slow") leaves it out

KINDS = ["batch", "execute", "bulk_insert", "query"]
# The shipped plans as data: valid documents to start from, mutated or not.
SHIPPED = [yaml.safe_load(path.read_text()) for path in sorted((ROOT / "plans").rglob("*.yaml"))]
# Numbers as a plan holds them (the text of a non-integer), one of them no float Python reads.
_SOME = st.sampled_from([None, 1, "x", [], {}, [1, "a"], {"k": 1}, True, 1.5, "5s", "{x}", 3,
                         Number("2.5"), Number("-1.0"), Number(".inf"), Number("1:30.5"), 25, -1])  # fmt: skip


@st.composite
def _mutated(draw: st.DrawFn) -> Any:
    """A plan-shaped document, perhaps with a step given another kind too, a key dropped or
    added, or a value swapped for one of another type."""
    base = draw(st.sampled_from(SHIPPED) | _from_schema(SCHEMA))
    document = copy.deepcopy(base)
    steps = document.get("steps") if isinstance(document, dict) else None
    for _ in range(draw(st.integers(0, 3))):
        if isinstance(steps, list) and steps and isinstance(steps[0], dict):
            step = draw(st.sampled_from(steps))
            if not isinstance(step, dict):
                continue
            what = draw(st.integers(0, 3))
            if what == 0:
                step[draw(st.sampled_from(KINDS))] = "SELECT 1"
            elif what == 1 and step:
                del step[draw(st.sampled_from(sorted(step)))]
            elif what == 2:
                step[
                    draw(
                        st.sampled_from(
                            [*KINDS, "retry", "expect", "capture", "lock_timeout", "zzz"]
                        )
                    )
                ] = draw(_SOME)
            elif step:
                step[draw(st.sampled_from(sorted(step)))] = draw(_SOME)
        elif isinstance(document, dict) and document:
            document[draw(st.sampled_from(sorted(document)))] = draw(_SOME)
    return document


seen = {True: 0, False: 0}


@given(document=_mutated())
@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_the_quick_schema_says_what_the_schema_says(document: Any) -> None:
    schema = load()
    verdict = schema.validator.is_valid(document)
    assert schema.fast(document) == verdict, document
    seen[verdict] += 1


def test_both_verdicts_were_seen() -> None:
    # runs after the property test in this module (pytest keeps file order)
    assert seen[True] >= 20, seen
    assert seen[False] > 20, seen
