"""Schema-valid step data -> frozen Step objects, checked for what a schema cannot say:
parameters against `$n`, one statement where one is run, rows_from files, template fields,
values a column's input function cannot be given, and SQL that is psql's rather than SQL."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, ClassVar

from ..errors import Position
from . import sqlparse, templates
from .document import Checker, Map, Scalar, Seq
from .files import FORMATS, FileSource, source_problem, suffix
from .model import (
    AnyStep,
    BatchStep,
    BulkInsertStep,
    Capture,
    ExecuteStep,
    Expect,
    Message,
    QueryStep,
    Retry,
    RowPositions,
    SourceText,
    Use,
)
from .schema_errors import article, did_you_mean
from .settings import SETTINGS, duration, duration_problem, seconds
from .values import value_problems
from .vars import references, uses_in

Add = Callable[[Position, str, str], None]


class StepBuilder(Checker):
    var_names: tuple[str, ...] = ()  # the vars the plan declares
    source_use: Use | None = None  # a rows_from file named with vars, for the step being built
    own_captures: tuple[str, ...] = ()  # the vars the step being built captures: its messages' too
    expect_uses: tuple[Use, ...] = ()  # the vars an expectation of the step being built uses

    def expect(self, index: int, node: Map, raw: dict[str, Any], kind: str) -> Expect | None:
        """expect: a count or range, a query's rows, or the error of a negative test."""
        spec = raw.get("expect")
        key = node.key("expect")
        if not isinstance(spec, dict) or key is None:
            return None
        position = self.at(key.start)
        count = spec.get("count")
        low = high = None
        if type(count) is int:
            low = high = count
        elif isinstance(count, dict):
            low, high = count.get("min"), count.get("max")
            if isinstance(low, int) and isinstance(high, int) and low > high:
                self.add(position, f"expect.count: min {low} is more than max {high}", "expect")
        rows = spec.get("rows")
        if rows is not None and kind != "query":
            self.add(position, "expect.rows is for query steps (expect a count here)", "expect")
        if "error" in spec and ("count" in spec or "rows" in spec):
            self.add(
                position,
                "expect.error is a negative test: it cannot be combined with count or rows",
                "expect",
            )
        checked: tuple[dict[str, object], ...] | None = None
        if isinstance(rows, list):
            checked = tuple(row for row in rows if isinstance(row, dict))
            names = [sorted(row) for row in checked]
            for row_index, row_names in enumerate(names):
                if row_names != names[0]:
                    offset = self.document.offset_at(["steps", index, "expect", "rows", row_index])
                    self.add(
                        self.at(offset),
                        f"expected row {row_index + 1} names {', '.join(row_names) or 'no column'}, "
                        f"but row 1 names {', '.join(names[0]) or 'no column'}: each expected row "
                        "names the same columns",
                        "expect",
                    )
            for row_index, row in enumerate(checked):
                for column, value in row.items():
                    self.check_value(["steps", index, "expect", "rows", row_index, column], value)
            self.expect_uses = tuple(self.uses([index, "expect", "rows"], list(checked)))
        return Expect(
            position=position,
            count_min=low if isinstance(low, int) else None,
            count_max=high if isinstance(high, int) else None,
            rows=checked,
            ordered=spec.get("ordered", True) is not False,
            error=spec.get("error") if isinstance(spec.get("error"), str) else None,
        )

    def settings(
        self, node: Map, raw: dict[str, Any], statements: Any
    ) -> tuple[tuple[str, str], ...]:
        """lock_timeout and statement_timeout: SET LOCAL inside the step's transaction, so
        only for statements that can run in one; and retry, likewise."""
        found = tuple((name, duration(raw[name])) for name in SETTINGS if name in raw)
        for name, value in found:
            problem = duration_problem(value)
            value_node = node.value(name)
            if problem is not None:
                self.add(
                    self.at(value_node.start if value_node else node.start),
                    f"{name}: {problem}",
                    "value",
                )
        for name in (*(n for n, _ in found), *(["retry"] if "retry" in raw else [])):
            if not sqlparse.runs_in_a_block(statements):
                key = node.key(name)
                self.add(
                    self.at(key.start if key else node.start),
                    f"{name} needs a transaction to hold it (SET LOCAL, a rollback to retry "
                    "from), and this step's SQL cannot run in one sqlplan opens: it ends or "
                    "opens a block, or runs outside any (CONCURRENTLY, VACUUM, CALL, ...)",
                    "setting-outside-transaction",
                )
        return found

    def retry(self, node: Map, raw: dict[str, Any]) -> Retry | None:
        spec = raw.get("retry")
        key = node.key("retry")
        if not isinstance(spec, dict) or key is None or not isinstance(spec.get("attempts"), int):
            return None
        backoff = seconds(duration(spec.get("backoff", "1s")))
        return Retry(spec["attempts"], backoff, self.at(key.start))

    def captures(
        self, index: int, raw: dict[str, Any], facts: sqlparse.ParsedSql
    ) -> tuple[Capture, ...]:
        """capture and capture_all: each var new, and a statement that returns rows."""
        found: list[Capture] = []
        for key, every in (("capture", False), ("capture_all", True)):
            spec = raw.get(key)
            if isinstance(spec, list):
                pairs = [
                    (column, column, ["steps", index, key, i]) for i, column in enumerate(spec)
                ]
            elif isinstance(spec, dict):
                pairs = [(var, column, ["steps", index, key, var]) for var, column in spec.items()]
            else:
                continue
            for var, column, path in pairs:
                if not isinstance(var, str) or not isinstance(column, str):
                    continue  # the schema reports it
                offset = (
                    self.document.key_offset_at(path)
                    if isinstance(spec, dict)
                    else self.document.offset_at(path)
                )
                position = self.at(offset if offset is not None else 0)
                if var in self.var_names or any(c.var == var for c in found):
                    self.add(
                        position,
                        f"var {var!r} is already declared or captured: capture it under another name",
                        "var-duplicate",
                    )
                found.append(Capture(var, column, every, position))
        if found and facts.statements and not _returns_rows(facts.statements[0]):
            self.add(
                found[0].position,
                "a capture needs the statement's rows, and it returns none: add RETURNING "
                "(INSERT, UPDATE, DELETE, MERGE) or capture from a query",
                "capture",
            )
        return tuple(found)

    def uses(self, path: list[int | str], value: object) -> list[Use]:
        """The var references in a value at `path` (from the step's mapping), each checked."""
        found = []
        for inner, template in uses_in(value):
            where = [*path, *inner]
            offset = self.document.offset_at(["steps", *where])
            for f in template.fields:
                if f.name not in self.var_names:
                    self.unknown_var(f.name, self.at(self.inside(offset, template.text, f.offset)))
            found.append(Use(tuple(where[1:]), template, self.at(offset)))
        return found

    def inside(self, start: int, value: str, offset: int) -> int:
        """The file offset of a character of a scalar that starts at `start`, where the text
        up to it is written as it reads (no escapes, no folding); else the scalar's start."""
        text = self.document.text
        begin = start + 1 if text[start : start + 1] in ("'", '"') else start
        return begin + offset if text[begin : begin + offset] == value[:offset] else start

    def unknown_var(self, name: str, position: Position) -> None:
        declared = ", ".join("{" + n + "}" for n in self.var_names)
        hint = (
            f"the plan declares {declared}{did_you_mean(name, self.var_names, braces=True)}"
            if self.var_names
            else "declare it under vars:"
        )
        self.add(
            position,
            f"unknown var {{{name}}}: {hint} (write {{{{{name}}}}} for the text {{{name}}})",
            "var-unknown",
        )

    def build(self, index: int, node: Map, raw: dict[str, Any]) -> AnyStep | None:
        """Step `index` (0-based) from its schema-valid mapping."""
        kind = next(k for k in self.schema.kind_keys if k in raw)
        self.own_captures = ()
        sql_node = node.value(kind)
        key_node = node.key(kind)
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

    def bulk_insert(
        self,
        index: int,
        node: Map,
        raw: dict[str, Any],
        facts: sqlparse.ParsedSql,
        common: dict[str, Any],
    ) -> BulkInsertStep:
        self.one_statement(index, node, raw, facts, common)
        width = facts.highest_placeholder
        rows: list[Any] = raw.get("rows", [])
        rows_node = node.value("rows")
        source = None
        if ("rows" in raw) == ("rows_from" in raw):
            self.add(
                self.at(node.start),
                "a bulk_insert step needs either rows or rows_from (one of them)",
                "missing-key",
            )
        elif "rows_from" in raw:
            from_node = node.value("rows_from")
            assert isinstance(from_node, Map)
            self.source_use = None
            source = self.file_source(from_node, raw["rows_from"], width)
        starts = rows_node.starts if isinstance(rows_node, Seq) else ()
        uses: list[Use] = []
        for row_index, row in enumerate(rows):
            if len(row) != width:
                self.add(
                    self.at(starts[row_index]),
                    f"row {row_index + 1} has {count(len(row), 'value')}, "
                    f"but the statement takes {count(width, 'parameter')}{param_range(width)}",
                    "row-width",
                )
            for value_index, value in enumerate(row):
                if type(value) in (list, dict):
                    self.check_value(["steps", index, "rows", row_index, value_index], value)
                    uses += self.uses([index, "rows", row_index, value_index], value)
                elif type(value) is str and "{" in value:
                    uses += self.uses([index, "rows", row_index, value_index], value)
        if source is not None and self.source_use is not None:
            uses.append(self.source_use)
        common["uses"] = (*uses, *self.expect_uses)
        # A file's row count is known only once it is read: {rows} cannot go in `before`.
        before_fields = ("rows",) if source is None else ()
        return BulkInsertStep(
            **common,
            rows=tuple(map(tuple, rows)),
            row_positions=RowPositions(self.document.path, self.document.packed_positions(starts)),
            source=source,
            width=width,
            copy_sql=sqlparse.copy_statement(facts.statements[0])
            if len(facts.statements) == 1
            else None,
            before=self.message(node, raw, "before", before_fields),
            after=self.message(node, raw, "after", ("count", "rows")),
            after_no_rows=self.message(node, raw, "after_no_rows", ("count", "rows")),
        )

    def check_value(self, path: list[object], value: object) -> None:
        """What a value cannot carry: infinities and NaN inside JSON, keys that are not text."""
        for inner, problem, at_key in value_problems(value):
            where = [*path, *inner]
            offset = self.document.key_offset_at(where) if at_key else None
            if offset is None:
                offset = self.document.offset_at(where)
            self.add(self.at(offset), problem, "value")

    def file_source(self, node: Map, raw: dict[str, Any], width: int) -> FileSource | None:
        """rows_from: a regular file beside the plan; CSV options PostgreSQL accepts; a CSV
        header holding the fields named."""
        file_node = node.value("file")
        assert file_node is not None
        where = self.at(file_node.start)
        name = raw["file"]
        base = Path(self.document.path).parent
        template = references(name)
        deferred = template is not None and bool(template.fields)
        if template is not None:
            for f in template.fields:
                if f.name not in self.var_names:
                    self.unknown_var(f.name, self.at(self.inside(file_node.start, name, f.offset)))
            if deferred:
                self.source_use = Use(("source", "file"), template, where)
            else:  # only {{name}} escapes
                name = "".join(p for p in template.parts if isinstance(p, str))
        shown = name if len(name) <= 120 else name[:119] + "…"
        last = template.parts[-1] if deferred and template else name
        known_suffix = suffix(last) if isinstance(last, str) else ""
        fmt = raw.get("format") or FORMATS.get(known_suffix)
        if fmt is None and not deferred:
            self.add(
                where,
                f"cannot tell the format of {shown!r} from its extension: add format: csv or jsonl",
                "rows-from",
            )
            return None
        fields = tuple(raw.get("fields", ()))
        fields_node = node.value("fields")
        if fields and len(fields) != width:
            self.add(
                self.at(fields_node.start) if fields_node else where,
                f"fields names {count(len(fields), 'field')}, but the statement takes {count(width, 'parameter')}{param_range(width)}",
                "row-width",
            )
        quote = raw.get("quote", '"')
        source = FileSource(
            path=base / name,
            display=str(base / name),
            format=fmt or "",
            header=raw.get("header", True),
            delimiter=raw.get("delimiter", ","),
            quote=quote,
            escape=raw.get("escape", quote),
            null=raw.get("null_string", ""),
            fields=fields,
            base=base if deferred else None,
        )
        if fmt == "csv" and not self.check_csv_options(node, source):
            return None
        if deferred:
            return source  # found and checked once its vars are bound
        problem = source_problem(source, width, name)
        if problem is not None:
            message, in_header = problem
            self.add(
                self.at(fields_node.start) if in_header and fields_node else where,
                message,
                "rows-from",
            )
            return None
        return source

    def check_csv_options(self, node: Map, source: FileSource) -> bool:
        """The option checks of PostgreSQL's COPY (FORMAT csv), at the option's key."""
        problems: list[tuple[str, str]] = []
        for key, value in (
            ("delimiter", source.delimiter),
            ("quote", source.quote),
            ("escape", source.escape),
        ):
            if len(value.encode("utf-8")) != 1:
                problems.append((key, f"the CSV {key} must be a single one-byte (ASCII) character"))
            elif value in "\r\n":
                problems.append((key, f"the CSV {key} cannot be a line break"))
        if "\r" in source.null or "\n" in source.null:
            problems.append(("null_string", "the NULL string cannot hold a line break"))
        if source.delimiter == source.quote:
            problems.append(("quote", "the CSV delimiter and quote must be different"))
        if source.delimiter in source.null:
            problems.append(("null_string", "the NULL string cannot hold the delimiter"))
        if source.quote in source.null:
            problems.append(("null_string", "the NULL string cannot hold the quote character"))
        for key, message in problems:
            at = node.value(key) or node
            self.add(self.at(at.start), message, "rows-from")
        return not problems

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

    def message(
        self,
        mapping: Map,
        raw: dict[str, Any],
        key: str,
        fields: Iterable[str],
        *,
        open_fields: bool = False,
    ) -> Message | None:
        """Parse a template; its fields must be among `fields` (or be columns, when open)."""
        if key not in raw:
            return None
        node = mapping.value(key)
        if not isinstance(node, Scalar) or not isinstance(node.value, str):
            return None  # the schema reports it
        source = self.document.source(node)
        try:
            template = templates.parse(source.text)
        except templates.TemplateSyntaxError as e:
            self.add(source.locate(e.offset), f"in '{key}': {e}", "template")
            return None
        known = (*fields, *self.var_names, *self.own_captures)
        for f in template.fields:
            if f.name in known or (open_fields and not f.name.startswith("$")):
                continue
            name = f.name if len(f.name) <= 60 else f.name[:59] + "…"
            if open_fields:
                extra = ", ".join("{" + k + "}" for k in known)
                hint = f"'{key}' can use the query's columns" + (f" and {extra}" if extra else "")
                hint += " (the query takes no parameters)" if not known else ""
            elif not known:
                hint = f"'{key}' has no fields (write {{{{ and }}}} for literal braces)"
            else:
                names = ", ".join("{" + k + "}" for k in known)
                hint = f"'{key}' can use {names}{did_you_mean(f.name, known, braces=True)}"
            self.add(source.locate(f.offset), f"unknown field {{{name}}}: {hint}", "template-field")
        return Message(template, source)

    # How each kind of step is built from its mapping, after what every kind shares.
    KINDS: ClassVar[dict[str, Callable[..., AnyStep]]] = {
        "batch": batch,
        "execute": execute,
        "bulk_insert": bulk_insert,
        "query": query,
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


def count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def param_range(n: int) -> str:
    return "" if n == 0 else (" ($1)" if n == 1 else f" ($1..${n})")


def _returns_rows(statement: sqlparse.Statement) -> bool:
    node = statement.node
    return statement.kind == "SelectStmt" or bool(
        node.get("returningList") or node.get("returningClause")
    )
