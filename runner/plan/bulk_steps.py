"""A bulk_insert step: its rows inline or from a file (`rows_from`: CSV or JSON Lines beside
the plan), each row as wide as the statement takes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import sqlparse
from .document import Map, Seq
from .files import FORMATS, FileSource, source_problem, suffix
from .model import (
    BulkInsertStep,
    RowPositions,
    Use,
)
from .step_base import StepChecker, count, param_range
from .vars import references


class BulkInsertBuilder(StepChecker):
    """Builds a bulk_insert step once what every step shares is built."""

    def bulk_insert(
        self,
        index: int,
        node: Map,
        raw: dict[str, Any],
        facts: sqlparse.ParsedSql,
        common: dict[str, Any],
    ) -> BulkInsertStep:
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
