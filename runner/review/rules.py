"""Every code sqlplan reports, in one catalogue: what it means, the safer form of what it warns
of, and the page of the documentation that explains it. SARIF's rule descriptors and the
pull-request comment are made from it; tests hold it to the code and to the docs' tables."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

# Where the documentation's Markdown pages are read (each rule's help URI is a page here, with
# its heading's anchor). The GitHub Action points it at the repository it runs from.
DOCS_URL = "https://github.com/sqlplan/sqlplan/blob/main/docs/"


@dataclass(frozen=True)
class Rule:
    code: str
    title: str  # what it reports, one line
    severity: str  # "error" or "warning"; "note" for what a rehearsal measured
    page: str  # the docs page and heading anchor: "checking-and-locks.md#locks-and-rewrites"
    safer: str = ""  # Markdown: what to write instead, for what warns

    @property
    def name(self) -> str:
        """The code as an identifier, as SARIF's `name` wants it: add-check -> AddCheck."""
        return "".join(part.capitalize() for part in self.code.split("-"))

    def help_uri(self) -> str:
        return docs_url(self.page)


def docs_url(page: str = "index.md") -> str:
    """A page of the documentation: under $SQLPLAN_DOCS_URL when set, else DOCS_URL."""
    return (os.environ.get("SQLPLAN_DOCS_URL") or DOCS_URL).rstrip("/") + "/" + page


def plain(markdown: str) -> str:
    """Markdown's inline code as plain text."""
    return re.sub(r"`([^`]*)`", r"\1", markdown)


_LOCKS = "checking-and-locks.md#locks-and-rewrites"
_CHECK = "checking-and-locks.md#sqlplan-check"
_POOLER = "timeouts-and-poolers.md#what-a-transaction-pooler-breaks"
_COMPAT = "pull-requests.md#compatibility-rules"
_FORMAT = "plan-format.md#validation"
_STEPS = "plan-format.md#steps"
_TEMPLATES = "plan-format.md#messages-and-templates"
_VARS = "vars.md#vars"
_BULK = "values-and-bulk-loads.md#bulk-loads"
_FAULTS = "faults-and-exit-codes.md#when-things-fail"
_REHEARSAL = "rehearsal.md#rehearsal"

WARNING_RULES = (
    Rule("drop", "DROP TABLE, DROP SCHEMA or DROP DATABASE deletes data", "warning", _CHECK,
         "allow it in the step (`allow: {drop: reason}`) when it is meant"),
    Rule("truncate", "TRUNCATE deletes every row", "warning", _CHECK,
         "`DELETE ... WHERE` for the rows meant, or allow it in the step"),
    Rule("delete-without-where", "DELETE without WHERE deletes every row", "warning", _CHECK,
         "a `WHERE` clause for the rows meant"),
    Rule("update-without-where", "UPDATE without WHERE changes every row", "warning", _CHECK,
         "a `WHERE` clause for the rows meant"),
    Rule("no-transaction-block", "a statement that cannot run in a transaction block is in one",
         "warning", _CHECK, "a step of its own, outside any `BEGIN` ... `COMMIT`"),
    Rule("unnamed-concurrent-index", "CREATE INDEX CONCURRENTLY without a name", "warning",
         _CHECK, "name the index: a failed build is then dropped and built again"),
    Rule("backfill-key", "a backfill over a table the plan creates without a unique key",
         "warning", "backfills.md#the-step", "a primary key or unique constraint on the key"),
    Rule("create-index", "CREATE INDEX without CONCURRENTLY: writes wait for the build",
         "warning", _LOCKS, "`CREATE INDEX CONCURRENTLY`, in a step of its own"),
    Rule("add-column-rewrite", "ADD COLUMN that rewrites the table under ACCESS EXCLUSIVE",
         "warning", _LOCKS, "add the column plain or with a constant default, fill it in batches"),
    Rule("alter-column-type", "ALTER COLUMN ... TYPE rewrites the table and its indexes",
         "warning", _LOCKS, "a new column, filled, then swapped"),
    Rule("set-not-null", "SET NOT NULL reads every row under ACCESS EXCLUSIVE", "warning",
         _LOCKS, "from PostgreSQL 12: a `CHECK (col IS NOT NULL) NOT VALID`, `VALIDATE` it, then "
         "`SET NOT NULL` (the scan is skipped)"),
    Rule("add-foreign-key", "ADD FOREIGN KEY without NOT VALID reads every row of both tables",
         "warning", _LOCKS,
         "`NOT VALID`, then `VALIDATE CONSTRAINT` in a later step (SHARE UPDATE EXCLUSIVE)"),
    Rule("add-check", "ADD CHECK without NOT VALID reads every row under ACCESS EXCLUSIVE",
         "warning", _LOCKS,
         "`NOT VALID`, then `VALIDATE CONSTRAINT` in a later step (SHARE UPDATE EXCLUSIVE)"),
    Rule("add-unique", "ADD UNIQUE or PRIMARY KEY builds its index under ACCESS EXCLUSIVE",
         "warning", _LOCKS, "`CREATE UNIQUE INDEX CONCURRENTLY`, then `ADD ... USING INDEX`"),
    Rule("exclude-constraint", "ADD EXCLUDE builds its index under ACCESS EXCLUSIVE", "warning",
         _LOCKS, "run it when the table is small or quiet"),
    Rule("drop-index", "DROP INDEX without CONCURRENTLY takes ACCESS EXCLUSIVE on its table",
         "warning", _LOCKS, "`DROP INDEX CONCURRENTLY`"),
    Rule("reindex", "REINDEX without CONCURRENTLY blocks writes and the index's readers",
         "warning", _LOCKS, "`REINDEX CONCURRENTLY` (PostgreSQL 12)"),
    Rule("detach-partition", "DETACH PARTITION without CONCURRENTLY", "warning", _LOCKS,
         "`DETACH PARTITION ... CONCURRENTLY` (PostgreSQL 14)"),
    Rule("rewrite-table", "VACUUM FULL, CLUSTER, SET LOGGED or SET TABLESPACE rewrites the table",
         "warning", _LOCKS, "plain `VACUUM`; pg_repack"),
    Rule("lock-timeout", "ACCESS EXCLUSIVE without a lock_timeout: queries queue behind its wait",
         "warning", _LOCKS, "`SET lock_timeout = '2s'` in an earlier step, and a retry"),
    Rule("held-lock", "statements run after an ACCESS EXCLUSIVE lock in its transaction",
         "warning", _LOCKS, "commit right after the locking statement"),
    Rule("not-analysed", "a statement whose locks the analysis does not know", "warning", _LOCKS,
         "`sqlplan rehearse` shows what it takes"),
    Rule("pooler-session-set", "a session SET through a transaction-mode pooler", "warning",
         _POOLER,
         "`SET LOCAL` in a block; the plan's `lock_timeout`/`statement_timeout`"),
    Rule("pooler-advisory-lock", "a session advisory lock through a transaction-mode pooler",
         "warning", _POOLER, "`pg_advisory_xact_lock()`"),
    Rule("pooler-listen", "LISTEN through a transaction-mode pooler", "warning", _POOLER,
         "a direct connection"),
    Rule("pooler-temp-table", "a temporary table used across transactions through a pooler",
         "warning", _POOLER,
         "create and use it in one `BEGIN` ... `COMMIT` (or `ON COMMIT DROP`)"),
    Rule("pooler-prepare", "PREPARE or a cursor WITH HOLD through a transaction-mode pooler",
         "warning", _POOLER, "a statement with parameters (an `execute` step)"),
    Rule("compat-drop-column", "a dropped column that running code still uses", "warning",
         _COMPAT, "deploy code that no longer uses the column first, then drop it in a later plan"),
    Rule("compat-rename-column", "a renamed column that running code knows by its old name",
         "warning", _COMPAT,
         "add the new column, write both, backfill, move the reads, then drop the old one"),
    Rule("compat-drop-table", "a dropped table or view that running code still uses", "warning",
         _COMPAT, "deploy code that no longer uses it first, then drop it in a later plan"),
    Rule("compat-rename-table", "a renamed table that running code knows by its old name",
         "warning", _COMPAT,
         "rename it and create a view with the old name until the code has moved"),
    Rule("compat-narrow-type", "a column narrowed under code that writes the old range",
         "warning", _COMPAT, "a new column of the new type, filled and checked, then switched"),
    Rule("compat-not-null", "NOT NULL that inserts from running code fail on", "warning",
         _COMPAT, "a `DEFAULT`, or deploy code that always writes the column first"),
)  # fmt: skip

ERROR_RULES = (
    Rule("yaml", "the file is not valid YAML", "error", _FORMAT),
    Rule("alias", "YAML aliases expand past the bound a plan allows", "error", _FORMAT),
    Rule("depth", "collections nested deeper than a plan allows", "error", _FORMAT),
    Rule("duplicate-key", "a key written twice in one mapping", "error", _FORMAT),
    Rule("key", "a key that is a list or a mapping", "error", _FORMAT),
    Rule("tag", "a YAML tag a plan does not support", "error", _FORMAT),
    Rule("empty", "a value that must not be empty is", "error", _FORMAT),
    Rule("schema", "the plan does not follow the plan schema", "error", _FORMAT),
    Rule("missing-key", "a required key is missing", "error", _FORMAT),
    Rule("unknown-key", "a key the plan format does not have", "error", _FORMAT),
    Rule("type", "a value of the wrong type", "error", _FORMAT),
    Rule("value", "a value outside what the key accepts", "error", _FORMAT),
    Rule("step-kind", "a step that is not exactly one of the step kinds", "error", _STEPS),
    Rule("sql-syntax", "SQL that PostgreSQL's parser refuses", "error", _FORMAT),
    Rule("no-statement", "SQL that holds no statement", "error", _STEPS),
    Rule("one-statement", "several statements where a step runs exactly one", "error", _STEPS),
    Rule("batch-params", "$n parameters in a batch step", "error", _STEPS),
    Rule("param-count", "parameters that do not match the SQL's $n", "error", _STEPS),
    Rule("placeholder", "a $n that does not count from $1 without gaps", "error", _STEPS),
    Rule("psql-meta-command", "a psql meta-command, which is not SQL", "error", _STEPS),
    Rule("copy-stdin", "COPY from or to the client in an SQL step", "error", _BULK),
    Rule("row-width", "a row with more or fewer values than the statement takes", "error", _BULK),
    Rule("rows-from", "a rows_from file that cannot be read as declared", "error", _BULK),
    Rule("template", "a message template that does not parse", "error", _TEMPLATES),
    Rule("template-field", "a template field the step does not provide", "error", _TEMPLATES),
    Rule("capture", "a capture that cannot work", "error",
         "captures-and-expectations.md#captures"),
    Rule("expect", "an expectation that cannot work", "error",
         "captures-and-expectations.md#expectations"),
    Rule("retry-in-block", "retry inside a transaction block another step opened", "error",
         "timeouts-and-poolers.md#timeouts-and-retries"),
    Rule("setting-outside-transaction", "a setting on a step that runs outside a transaction",
         "error", "timeouts-and-poolers.md#timeouts-and-retries"),
    Rule("backfill-statement", "a backfill whose SQL is not one data change", "error",
         "backfills.md#the-step"),
    Rule("backfill-table", "a backfill whose table cannot be told", "error",
         "backfills.md#the-step"),
    Rule("backfill-range", "a backfill's SQL not limited to its batch's key range", "error",
         "backfills.md#the-key-range"),
    Rule("backfill-in-block", "a backfill inside a transaction block", "error",
         "backfills.md#the-step"),
    Rule("once-name", "two once plans with one name", "error",
         "several-plans.md#several-plans-and-plans-that-run-once"),
    Rule("var-missing", "a var the plan uses has no value", "error", _VARS),
    Rule("var-unknown", "a var given that the plan does not declare", "error", _VARS),
    Rule("var-type", "a var's value of the wrong type", "error", _VARS),
    Rule("var-duplicate", "a var given twice", "error", _VARS),
    Rule("var-file", "a --vars file that cannot be read", "error", _VARS),
    Rule("var-secret", "a secret too short to mask", "error", _VARS),
    Rule("io", "the plan file cannot be read", "error", _FAULTS),
    Rule("encoding", "the plan is not valid UTF-8", "error", _FAULTS),
    Rule("internal", "a bug in sqlplan", "error", _FAULTS),
)  # fmt: skip

# What a rehearsal reports beside the offline analysis (`rehearse --format sarif`).
REHEARSAL_RULES = (
    Rule("statement-failed", "a statement failed in the rehearsal", "error", _REHEARSAL),
    Rule("would-wait", "a statement would wait for a lock another session holds", "error",
         _REHEARSAL, "run it when that session is done, or set a `lock_timeout` and a retry"),
    Rule("lock-differs", "the locks or rewrites observed differ from the analysis", "warning",
         _REHEARSAL, "read what the server took: the rehearsal's report names it"),
    Rule("blocks-others", "a lock other sessions wait behind in a real run, and for how long",
         "note", _REHEARSAL, "shorten the transaction that holds it"),
)  # fmt: skip

RULES: dict[str, Rule] = {r.code: r for r in (*WARNING_RULES, *ERROR_RULES, *REHEARSAL_RULES)}


def rule(code: str) -> Rule:
    """The rule of `code`; a code missing from the catalogue (a bug a test catches) still gets
    one, pointing at the validation docs."""
    return RULES.get(code) or Rule(code, code, "error", _FORMAT)
