"""What a transaction-mode pooler breaks, flagged at its line: by `check --pooler`, by `check`
when the configured URL names a pooler (Neon's -pooler host, pgbouncer=true), and by `run`
before it sends anything through one."""

from __future__ import annotations

import pytest
from conftest import ROOT, Cli

PLANS = ROOT / "tests" / "plans" / "pooler"
NEON_POOLER = "postgresql://app:pw@ep-cool-darkness-123456-pooler.us-east-2.aws.neon.tech/neondb?sslmode=require"
NEON_DIRECT = NEON_POOLER.replace("-pooler", "")


def _check(cli: Cli, *args: str, url: str | None = None) -> str:
    cli.cwd = PLANS
    result = cli("check", *args, "pooler.yaml", env={"DATABASE_URL": url} if url else {})
    assert result.exit_code == 0, result.stdout + result.stderr
    return result.stdout


def test_check_pooler_flags_each_at_its_line(cli: Cli) -> None:
    assert _check(cli, "--pooler") == (PLANS / "pooler.expected").read_text()


@pytest.mark.parametrize(
    ("url", "flagged"),
    [
        (NEON_POOLER, True),
        (NEON_DIRECT, False),
        ("postgresql://app@localhost:6432/db?pgbouncer=true", True),
        ("postgresql://app@db-pooler.internal/db?pgbouncer=false", False),
        ("postgresql://app@db-pooler.internal/db", True),
        (None, False),
    ],
)
def test_check_flags_them_when_the_url_names_a_pooler(
    cli: Cli, url: str | None, flagged: bool
) -> None:
    found = _check(cli, url=url)
    assert ("[pooler-" in found) == flagged
    if flagged:
        assert found == (PLANS / "pooler.expected").read_text()
        assert "[pooler-" not in _check(cli, "--no-pooler", url=url)


def test_the_allow_list_silences_them(cli: Cli) -> None:
    expected = (PLANS / "pooler.expected").read_text()
    assert "step 11" not in expected  # SET with allow: [pooler-session-set]
    for code in ("session-set", "advisory-lock", "listen", "temp-table", "prepare"):
        assert f"[pooler-{code}]" in expected
    assert "step 4:" not in expected  # pg_advisory_xact_lock: transaction-level, fine
    assert "step 2:" not in expected  # SET LOCAL: fine
    assert "table kept" not in expected  # created and used inside one transaction
    assert "table gone" not in expected  # ON COMMIT DROP


def test_a_bad_pgbouncer_value_is_a_configuration_error(cli: Cli) -> None:
    cli.write("p.yaml", "sqlplan: 1\nname: p\nsteps:\n  - batch: SELECT 1\n")
    result = cli("run", "p.yaml", env={"DATABASE_URL": "postgresql://a@h/d?pgbouncer=maybe"})
    assert result.exit_code == 4
    assert "pgbouncer must be true or false, not 'maybe'" in result.stderr
