"""sqlplan's lock and rewrite rules against squawk's, over a corpus of DDL (tests/corpus/ddl.sql):
every lock or rewrite finding squawk makes, sqlplan makes too, or the difference is one the
README explains ("Locks and rewrites"). Where the two disagree about what the server does,
tests/review/test_locks.py settles it on the server itself."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

from runner.plan.sqlparse import parse
from runner.review.locks import KEEPS_TABLE, Context, findings, locks

CORPUS = [
    line.rstrip(";")
    for line in (ROOT / "tests" / "corpus" / "ddl.sql").read_text().splitlines()
    if line and not line.startswith("--")
]

# squawk's lock and rewrite rules, and the sqlplan codes that say the same
SAME = {
    "require-concurrent-index-creation": {"create-index"},
    "require-concurrent-index-deletion": {"drop-index"},
    "require-concurrent-reindex": {"reindex"},
    "require-concurrent-partition-detach": {"detach-partition"},
    "adding-field-with-default": {"add-column-rewrite"},
    "adding-serial-primary-key-field": {"add-unique", "add-column-rewrite"},
    "changing-column-type": {"alter-column-type"},
    "adding-not-nullable-field": {"set-not-null"},
    "adding-foreign-key-constraint": {"add-foreign-key"},
    "constraint-missing-not-valid": {
        "add-check",
        "add-foreign-key",
        "add-unique",
        "exclude-constraint",
    },
    "disallowed-unique-constraint": {"add-unique"},
    "require-lock-timeout": {"lock-timeout"},
}
# squawk's rules about other things than locks and rewrites: style, backward compatibility,
# data loss (sqlplan's drop, truncate, ... warnings), idempotency, and statement timeouts.
OTHER = {
    "require-statement-timeout", "prefer-robust-stmts", "prefer-bigint-over-int",
    "prefer-bigint-over-smallint", "prefer-identity", "prefer-text-field", "prefer-timestamptz",
    "renaming-column", "renaming-table", "ban-drop-column", "ban-drop-not-null",
    "adding-required-field", "ban-drop-table", "ban-drop-database", "ban-char-field",
    "transaction-nesting", "ban-truncate-cascade",
}  # fmt: skip
# sqlplan warns of lock_timeout only before ACCESS EXCLUSIVE on a table it keeps (the lock
# that makes reads queue behind it); statements with weaker locks (CONCURRENTLY, VALIDATE, SET
# STATISTICS, ...) and those with a rule of their own (create-index, drop-index, reindex,
# rewrite-table, and DROP or TRUNCATE as data loss) are not warned of twice. README: "Locks and
# rewrites".
OWN_RULES = {"create-index", "drop-index", "reindex", "rewrite-table"}


def _squawk() -> str:
    found = shutil.which("squawk") or str(Path(sys.executable).parent / "squawk")
    if not Path(found).exists():
        pytest.skip("squawk-cli is not installed (pip install -e '.[test]' installs it)")
    return found


def _squawk_rules(sql: str, tmp_path: Path) -> set[str]:
    path = tmp_path / "statement.sql"
    path.write_text(sql + ";\n")
    result = subprocess.run(
        [_squawk(), "--reporter", "json", "--pg-version", "18.0", str(path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return {finding["rule_name"] for finding in json.loads(result.stdout or "[]")}


def test_the_corpus_has_at_least_a_hundred_statements() -> None:
    assert len(CORPUS) >= 100


@pytest.mark.parametrize("sql", CORPUS)
def test_every_lock_finding_of_squawk_is_sqlplans_too(sql: str, tmp_path: Path) -> None:
    (statement,) = parse(sql).statements
    ours = {f.code for f in findings(statement, Context())}
    theirs = _squawk_rules(sql, tmp_path)
    unknown = theirs - set(SAME) - OTHER
    assert not unknown, f"a squawk rule sqlplan does not know: {unknown}"
    for rule in theirs & set(SAME):
        if rule == "require-lock-timeout" and (
            ours & OWN_RULES
            or statement.kind not in KEEPS_TABLE
            or not any(lock.mode == "ACCESS EXCLUSIVE" for lock in locks(statement))
        ):
            continue  # a statement with its own rule, or a weaker lock: see OWN_RULES
        assert SAME[rule] & ours, f"squawk: {rule}; sqlplan: {sorted(ours)}"
