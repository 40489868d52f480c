"""Schema-valid step data -> frozen Step objects, checked for what a schema cannot say:
parameters against `$n`, one statement where one is run, rows_from files, template fields,
values a column's input function cannot be given, and SQL that is psql's rather than SQL."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, ClassVar

from ..errors import Position
from . import sqlparse, templates
from .backfill_steps import BackfillBuilder
from .bulk_steps import BulkInsertBuilder
from .document import Map, Scalar
from .model import (
    AnyStep,
    BatchStep,
    BulkInsertStep,
    ExecuteStep,
    QueryStep,
    SourceText,
)
from .schema_errors import article
from .step_base import count, param_range
from .step_options import StepOptions

Add = Callable[[Position, str, str], None]


class StepBuilder(StepOptions, BulkInsertBuilder, BackfillBuilder):
    """Builds each step from its schema-valid mapping: what every kind shares, then its kind's
    own part (KINDS)."""

    def build(self, index: int, node: Map, raw: dict[str, Any]) -> AnyStep | None:
        """Step `index` (0-based) from its schema-valid mapping."""
        kind = next(k for k in self.schema.kind_keys if k in raw)
        self.own_captures = ()
        sql_node = node.value(kind)
        key_node = node.key(kind)
        if isinstance(sql_node, Map):  # a backfill: its SQL beside its other parts
            sql_node = sql_node.value("sql")
        assert isinstance(sql_node, Scalar)
        assert key_node is not None
        sql = self.document.source(sql_node)
        try:
            facts = sqlparse.parse(sql.text)
        except sqlparse.SqlSyntaxError as e:
            self.sql_syntax_error(sql, e)
            return None
        common: dict[str, Any] = {
            "number": index + 1,
            "name": raw.get("name"),
            "position": self.at(key_node.start),
            "sql": sql,
            "statements": facts.statements,
            "allow": frozenset(raw.get("allow", ())),
            "reasons": tuple(sorted(raw["allow"].items()))
            if isinstance(raw.get("allow"), dict)
            else (),
        }
        if not facts.statements:
            self.add(sql.position, "the SQL holds no statement", "no-statement")
            return None
        common["settings"] = self.settings(node, raw, facts.statements)
        common["retry"] = self.retry(node, raw)
        self.check_client_side(sql, facts)
        return self.KINDS[kind](self, index, node, raw, facts, common)

    def batch(
        self,
        index: int,
        node: Map,
        raw: dict[str, Any],
        facts: sqlparse.ParsedSql,
        common: dict[str, Any],
    ) -> BatchStep:
        sql = common["sql"]
        for placeholder in facts.placeholders:
            self.add(
                sql.locate(placeholder.offset),
                f"a batch step takes no parameters, but its SQL uses ${placeholder.number} "
                "(use an execute step)",
                "batch-params",
            )
        return BatchStep(
            **common,
            before=self.message(node, raw, "before", ()),
            after=self.message(node, raw, "after", ()),
        )

    def one_statement(
        self,
        index: int,
        node: Map,
        raw: dict[str, Any],
        facts: sqlparse.ParsedSql,
        common: dict[str, Any],
    ) -> None:
        """What execute, query and bulk_insert steps share: one statement, its placeholders,
        an `expect`."""
        kind = next(k for k in self.schema.kind_keys if k in raw)
        if len(facts.statements) > 1:
            self.add(
                common["sql"].locate(facts.statements[1].offset),
                f"{article(kind)} step runs exactly one statement, but its SQL has "
                f"{len(facts.statements)} (use a batch step for several)",
                "one-statement",
            )
        self.check_placeholders(common["sql"], facts)
        self.expect_uses = ()
        common["expect"] = self.expect(index, node, raw, kind)

    def parameterised(
        self,
        index: int,
        node: Map,
        raw: dict[str, Any],
        facts: sqlparse.ParsedSql,
        common: dict[str, Any],
    ) -> tuple[object, ...]:
        """What execute and query steps share: one statement, captures, and `params` for its
        $1..$n."""
        self.one_statement(index, node, raw, facts, common)
        common["captures"] = self.captures(index, raw, facts)
        self.own_captures = tuple(c.var for c in common["captures"])
        params = tuple(raw.get("params", ()))
        params_node = node.value("params")
        for value_index, value in enumerate(params):
            self.check_value(["steps", index, "params", value_index], value)
        common["uses"] = (*self.uses([index, "params"], list(params)), *self.expect_uses)
        if len(params) != facts.highest_placeholder:
            where = self.at(params_node.start if params_node else node.start)
            self.add(
                where,
                f"the SQL takes {count(facts.highest_placeholder, 'parameter')}"
                f"{param_range(facts.highest_placeholder)}, but params has {count(len(params), 'value')}",
                "param-count",
            )
        return params

    def bulk(
        self,
        index: int,
        node: Map,
        raw: dict[str, Any],
        facts: sqlparse.ParsedSql,
        common: dict[str, Any],
    ) -> BulkInsertStep:
        self.one_statement(index, node, raw, facts, common)
        return self.bulk_insert(index, node, raw, facts, common)

    def execute(
        self,
        index: int,
        node: Map,
        raw: dict[str, Any],
        facts: sqlparse.ParsedSql,
        common: dict[str, Any],
    ) -> ExecuteStep:
        params = self.parameterised(index, node, raw, facts, common)
        fields = templates.param_fields(facts.highest_placeholder)
        return ExecuteStep(
            **common,
            params=params,
            before=self.message(node, raw, "before", fields),
            after=self.message(node, raw, "after", ("count", *fields)),
            after_no_rows=self.message(node, raw, "after_no_rows", ("count", *fields)),
        )

    def query(
        self,
        index: int,
        node: Map,
        raw: dict[str, Any],
        facts: sqlparse.ParsedSql,
        common: dict[str, Any],
    ) -> QueryStep:
        params = self.parameterised(index, node, raw, facts, common)
        fields = templates.param_fields(facts.highest_placeholder)
        outer = ("count", *fields)
        return QueryStep(
            **common,
            params=params,
            before=None,
            header=self.message(node, raw, "header", outer),
            row=self.message(node, raw, "row", fields, open_fields=True),
            empty=self.message(node, raw, "empty", outer),
            footer=self.message(node, raw, "footer", outer),
        )

    def check_placeholders(self, sql: SourceText, facts: sqlparse.ParsedSql) -> None:
        used = {p.number for p in facts.placeholders}
        for placeholder in facts.placeholders:
            if placeholder.number == 0:
                self.add(
                    sql.locate(placeholder.offset), "parameters are numbered from $1", "placeholder"
                )
        for missing in sorted(set(range(1, facts.highest_placeholder + 1)) - used):
            self.add(
                sql.position,
                f"the SQL uses ${facts.highest_placeholder} but never ${missing}: "
                "PostgreSQL cannot tell the type of an unused parameter",
                "placeholder",
            )

    def sql_syntax_error(self, sql: SourceText, error: sqlparse.SqlSyntaxError) -> None:
        meta = _psql_meta_command(sql.text)
        if meta is not None:
            offset, command = meta
            self.add(
                sql.locate(offset),
                f"{command} is a psql meta-command, not SQL: psql runs it itself and never "
                f"sends it to the server{_META_HINTS.get(command, '')}",
                "psql-meta-command",
            )
            return
        copy = _copy_before(sql.text, error.offset)
        if copy is not None:
            self.add(
                sql.locate(copy),
                "COPY ... FROM STDIN reads its data from the client: psql takes the lines after "
                "it, a plan cannot; put the rows in a bulk_insert step (rows or rows_from)",
                "copy-stdin",
            )
            return
        self.add(sql.locate(error.offset), f"SQL syntax error: {error}", "sql-syntax")

    def check_client_side(self, sql: SourceText, facts: sqlparse.ParsedSql) -> None:
        """COPY to or from the client needs a data stream a plan's SQL step does not have."""
        for statement in facts.statements:
            if statement.kind != "CopyStmt" or statement.node.get("filename"):
                continue
            if statement.node.get("is_program"):
                continue
            if statement.node.get("is_from"):
                message = (
                    "COPY ... FROM STDIN reads its data from the client, which a plan's SQL "
                    "cannot send; put the rows in a bulk_insert step (rows or rows_from)"
                )
            else:
                message = (
                    "COPY ... TO STDOUT sends its rows to the client, which a plan's SQL step "
                    "cannot print; use a query step"
                )
            self.add(sql.locate(statement.offset), message, "copy-stdin")

    # How each kind of step is built from its mapping, after what every kind shares.
    KINDS: ClassVar[dict[str, Callable[..., AnyStep]]] = {
        "batch": batch,
        "execute": execute,
        "bulk_insert": bulk,
        "query": query,
        "backfill": BackfillBuilder.backfill,
    }


# A backslash command at the start of a line (after white space): psql's, not the server's.
_META = re.compile(r"^[ \t]*(\\[A-Za-z!?.]+|\\\\)", re.M)
_META_HINTS = {
    "\\c": "; choose the database with the URL (DATABASE_URL or --database-url)",
    "\\connect": "; choose the database with the URL (DATABASE_URL or --database-url)",
    "\\copy": "; load a file with a bulk_insert step's rows_from",
    "\\i": "; put the file's statements in a batch step",
    "\\ir": "; put the file's statements in a batch step",
    "\\set": "; write the value where it is used, as a parameter",
    "\\.": "; it ends psql's inline COPY data, which a plan gives with a bulk_insert step",
}


def _psql_meta_command(sql: str) -> tuple[int, str] | None:
    """(offset, command) of the first line that starts with a backslash command, if the SQL
    fails to parse because of it."""
    match = _META.search(sql)
    if match is None:
        return None
    try:
        sqlparse.parse(sql[: match.start()])
    except sqlparse.SqlSyntaxError:
        return None  # the SQL is already broken before it: report that
    return match.start(1), match.group(1)


def _copy_before(sql: str, offset: int) -> int | None:
    """The offset of a COPY ... FROM STDIN that the failing text follows, as in a psql script
    whose COPY data comes on the next lines."""
    line_start = sql.rfind("\n", 0, offset) + 1
    try:
        facts = sqlparse.parse(sql[:line_start])
    except sqlparse.SqlSyntaxError:
        return None
    for statement in reversed(facts.statements):
        node = statement.node
        if statement.kind == "CopyStmt" and node.get("is_from") and not node.get("filename"):
            return statement.offset
        return None
    return None
