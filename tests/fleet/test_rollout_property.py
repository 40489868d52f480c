"""Random fleets (sizes, which targets' data fails the plan, parallelism, canaries, failure
budgets) end with every target in the state that running the plans on that database alone
gives; the targets that ran are a prefix of the order, exactly the one-by-one prefix at
--parallel 1; never more connections than --parallel."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Server
from fleets import Fleet, write_plans
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner import api
from runner.fleet.results import Options
from runner.fleet.targets import FleetTarget

SIZE = 8


@pytest.fixture(scope="module")
def pool(server: Server) -> Iterator[Fleet]:
    fleet = Fleet(server.target, SIZE + 2, prefix="p")
    yield fleet
    fleet.drop()


@pytest.fixture(scope="module")
def plans(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    directory = tmp_path_factory.mktemp("plans")
    return [str(directory / name) for name in write_plans(directory)]


def _seed(fleet: Fleet, index: int, failing: bool) -> None:
    fleet.query(index, "DROP TABLE IF EXISTS accounts")
    fleet.query(index, "DROP SCHEMA IF EXISTS sqlplan CASCADE")
    if failing:
        fleet.query(index, "CREATE TABLE accounts (id int)")  # the migration fails on it


@pytest.fixture(scope="module")
def alone(pool: Fleet, plans: list[str]) -> dict[bool, object]:
    """The oracle: each kind of seed's state after the plans ran on that database alone."""
    found: dict[bool, object] = {}
    for failing, index in ((False, SIZE), (True, SIZE + 1)):
        _seed(pool, index, failing)
        api.run_plans(plans, database_url=pool.url(index))
        found[failing] = pool.accounts(index)
    assert found == {False: [1, 2, 3], True: []}
    return found


def _one_by_one(failing: list[bool], canary: int, budget: int) -> int:
    """How many targets a rollout one at a time runs: the canaries (the budget counting),
    none after a canary failed, then on until the budget is spent."""
    failures = 0
    for index, fails in enumerate(failing):
        if index == canary and canary and any(failing[:canary]):
            return index
        failures += fails
        if budget and failures >= budget:
            return index + 1
    return len(failing)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    failing=st.lists(st.booleans(), min_size=1, max_size=SIZE),
    parallel=st.integers(1, 4),
    canary=st.integers(0, 3),
    budget=st.integers(0, 3),
)
def test_a_random_rollout_ends_as_the_targets_run_alone(  # noqa: PLR0917  (fixtures, then drawn)
    pool: Fleet,
    plans: list[str],
    alone: dict[bool, object],
    tmp_path: Path,
    failing: list[bool],
    parallel: int,
    canary: int,
    budget: int,
) -> None:
    for index, fails in enumerate(failing):
        _seed(pool, index, fails)
    targets = [FleetTarget(f"t{i}", pool.url(i)) for i in range(len(failing))]
    options = Options(parallel=parallel, canary=canary, max_failures=budget, deadline=None)
    fleet = api.run_fleet(plans, targets, options)
    statuses = [t.status for t in fleet.targets]
    ran = [s != "not run" for s in statuses]
    count = sum(ran)
    assert ran == [True] * count + [False] * (len(failing) - count)  # a prefix of the order
    expected = _one_by_one(failing, canary, budget)
    if parallel == 1:
        assert count == expected
    else:
        assert count >= expected
    if canary and any(failing[:canary]):
        assert count <= canary
    for index, fails in enumerate(failing):
        state = pool.accounts(index)
        if ran[index]:
            assert statuses[index] == ("failed" if fails else "applied")
            assert state == alone[fails]
        else:
            assert state == ([] if fails else None)  # untouched
    assert fleet.most_open <= parallel
    assert int(fleet.exit_code) == (1 if any(failing[:count]) else 0)
