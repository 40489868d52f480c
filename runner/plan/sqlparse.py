"""SQL read by PostgreSQL's own parser (libpg_query, through pglast): statements, `$n`, errors."""

from __future__ import annotations

import bisect
import itertools
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any


class SqlSyntaxError(ValueError):
    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset  # 0-based character offset into the SQL


@dataclass(frozen=True)
class Placeholder:
    number: int
    offset: int  # 0-based character offset of the `$`


@dataclass(frozen=True)
class Statement:
    kind: str  # the parse node's type: "SelectStmt", "DropStmt", ...
    node: dict[str, Any]  # its fields, as libpg_query's JSON gives them
    offset: int  # 0-based character offset of its first character
    text: str


@dataclass(frozen=True)
class ParsedSql:
    statements: tuple[Statement, ...]
    placeholders: tuple[Placeholder, ...]

    @property
    def highest_placeholder(self) -> int:
        return max((p.number for p in self.placeholders), default=0)


def parse(sql: str) -> ParsedSql:
    """Parse with PostgreSQL 18's grammar; raise SqlSyntaxError at the offending character."""
    from pglast import parser

    try:
        tree = json.loads(parser.parse_sql_json(sql))
    except parser.ParseError as e:
        message, offset = (*e.args, 0)[:2]
        raise SqlSyntaxError(str(message), min(int(offset or 0), max(len(sql) - 1, 0))) from None
    # libpg_query's locations count UTF-8 bytes; diagnostics need characters (one table for
    # the whole text, so that thousands of statements stay linear).
    encoded = sql.encode("utf-8")
    char = _byte_to_char(sql, encoded)

    statements = []
    placeholders = []
    for raw in tree.get("stmts", []):
        ((kind, node),) = raw["stmt"].items()
        start = raw.get("stmt_location", 0)
        length = raw.get("stmt_len") or len(encoded) - start
        text = encoded[start : start + length].decode("utf-8", errors="replace")
        # stmt_location points at the end of the previous statement: skip to the first token.
        skipped = len(text) - len(_strip_leading(text))
        statements.append(Statement(kind, node, char(start) + skipped, text[skipped:]))
        for ref in _nodes(node, "ParamRef"):
            placeholders.append(
                Placeholder(int(ref.get("number", 0)), char(int(ref.get("location", 0))))
            )
    placeholders.sort(key=lambda p: p.offset)
    return ParsedSql(tuple(statements), tuple(placeholders))


def _byte_to_char(sql: str, encoded: bytes) -> Callable[[int], int]:
    """The character offset of a UTF-8 byte offset into `sql` (a byte inside a character
    counts as that character's start, as decoding the prefix with errors ignored does)."""
    if len(encoded) == len(sql):
        return lambda byte_offset: min(max(byte_offset, 0), len(sql))
    starts = list(itertools.accumulate((len(c.encode("utf-8")) for c in sql), initial=0))

    def char(byte_offset: int) -> int:
        return bisect.bisect_right(starts, max(byte_offset, 0)) - 1

    return char


def _strip_leading(text: str) -> str:
    """Drop white space and comments before the first token."""
    while True:
        stripped = text.lstrip()
        if stripped.startswith("--"):
            newline = stripped.find("\n")
            text = "" if newline < 0 else stripped[newline + 1 :]
        elif stripped.startswith("/*"):
            depth, i = 0, 0
            while i < len(stripped):
                if stripped.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif stripped.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                    if depth == 0:
                        break
                else:
                    i += 1
            text = stripped[i:]
        else:
            return stripped


def nodes(tree: Any) -> Iterator[dict[str, Any]]:
    """Every node (dict) of a parse tree, depth first, each before what it holds."""
    if isinstance(tree, dict):
        yield tree
        for value in tree.values():
            yield from nodes(value)
    elif isinstance(tree, list):
        for item in tree:
            yield from nodes(item)


def _nodes(tree: Any, kind: str) -> Iterator[dict[str, Any]]:
    """Every node of a type anywhere below `tree`."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            if key == kind and isinstance(value, dict):
                yield value
            yield from _nodes(value, kind)
    elif isinstance(tree, list):
        for item in tree:
            yield from _nodes(item, kind)


def line_at(sql: str, offset: int) -> tuple[str, int]:
    """The line of `sql` holding `offset` (0-based) and the offset's column within it."""
    offset = max(0, min(offset, len(sql)))
    start = sql.rfind("\n", 0, offset) + 1
    end = sql.find("\n", offset)
    return sql[start : len(sql) if end < 0 else end], offset - start


def copy_statement(statement: Statement) -> str | None:
    """`COPY t (cols) FROM STDIN` doing exactly what `statement` does once per row, if there is one.

    Only for `INSERT INTO t (c1, ..., cn) VALUES ($i, ...)` with one VALUES list of bare, distinct
    placeholders $1..$n and nothing else (no ON CONFLICT, RETURNING, WITH, OVERRIDING, DEFAULT,
    casts or expressions): then each row's values, in $-order, are one line of COPY data. The
    names come from the parse tree and are quoted again; no value is ever part of the text.
    """
    if statement.kind != "InsertStmt":
        return None
    node = statement.node
    if set(node) - {"relation", "cols", "selectStmt", "override"}:
        return None
    if node.get("override", "OVERRIDING_NOT_SET") != "OVERRIDING_NOT_SET":
        return None
    select = node.get("selectStmt", {}).get("SelectStmt", {})
    lists = select.get("valuesLists", [])
    if set(select) - {"valuesLists", "limitOption", "op"} or len(lists) != 1:
        return None
    items = lists[0].get("List", {}).get("items", [])
    columns = [c.get("ResTarget", {}) for c in node.get("cols", [])]
    if (
        not items
        or len(columns) != len(items)
        or any(set(c) != {"name", "location"} for c in columns)
    ):
        return None
    by_number: dict[int, str] = {}
    for item, column in zip(items, columns, strict=True):
        if set(item) != {"ParamRef"}:
            return None
        by_number[int(item["ParamRef"].get("number", 0))] = column["name"]
    if sorted(by_number) != list(range(1, len(items) + 1)):
        return None
    relation = node.get("relation", {})
    parts = [relation.get(k) for k in ("catalogname", "schemaname", "relname") if relation.get(k)]
    names = ", ".join(_quote_ident(by_number[n]) for n in sorted(by_number))
    return f"COPY {'.'.join(_quote_ident(str(p)) for p in parts)} ({names}) FROM STDIN"


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


_OPENS = ("TRANS_STMT_BEGIN", "TRANS_STMT_START")
_CLOSES = ("TRANS_STMT_COMMIT", "TRANS_STMT_ROLLBACK", "TRANS_STMT_PREPARE")


def transaction_kind(statement: Statement) -> str | None:
    """TRANS_STMT_BEGIN, ..._COMMIT, ... for transaction control; None for anything else."""
    if statement.kind != "TransactionStmt":
        return None
    return str(statement.node.get("kind"))


def opens_block(statement: Statement) -> bool:
    return transaction_kind(statement) in _OPENS


def closes_block(statement: Statement) -> bool:
    """COMMIT, ROLLBACK or PREPARE TRANSACTION (not ... AND CHAIN, which opens the next)."""
    return transaction_kind(statement) in _CLOSES and not statement.node.get("chain")


def block_open_after(statements: Iterable[Statement], open_before: bool) -> bool:
    """Whether a transaction block is open after the statements run, one having been open
    before them or not."""
    open_now = open_before
    for statement in statements:
        if opens_block(statement):
            open_now = True
        elif closes_block(statement):
            open_now = False
    return open_now


_NON_TRANSACTIONAL_KINDS = {
    "VacuumStmt": "VACUUM",
    "CreatedbStmt": "CREATE DATABASE",
    "DropdbStmt": "DROP DATABASE",
    "AlterSystemStmt": "ALTER SYSTEM",
    "CreateTableSpaceStmt": "CREATE TABLESPACE",
    "DropTableSpaceStmt": "DROP TABLESPACE",
}


def non_transactional(statement: Statement) -> str | None:
    """The statement's name if it cannot run inside a transaction block."""
    kind, node = statement.kind, statement.node
    if kind in _NON_TRANSACTIONAL_KINDS:
        if kind == "VacuumStmt" and not node.get("is_vacuumcmd"):
            return None  # ANALYZE can
        return _NON_TRANSACTIONAL_KINDS[kind]
    if kind == "IndexStmt" and node.get("concurrent"):
        return "CREATE INDEX CONCURRENTLY"
    if kind == "DropStmt" and node.get("concurrent"):
        return "DROP INDEX CONCURRENTLY"
    if kind == "ReindexStmt" and any(
        p.get("DefElem", {}).get("defname") == "concurrently" for p in node.get("params", [])
    ):
        return "REINDEX CONCURRENTLY"
    if kind == "ClusterStmt" and not node.get("relation"):
        return "CLUSTER (every table)"
    if kind == "AlterTableStmt":
        for item in node.get("cmds", []):
            command = item.get("AlterTableCmd", {})
            if command.get("subtype") == "AT_DetachPartition" and command.get("def", {}).get(
                "PartitionCmd", {}
            ).get("concurrent"):
                return "DETACH PARTITION CONCURRENTLY"
    return None


def runs_in_a_block(statements: Iterable[Statement]) -> bool:
    """Whether sqlplan may put these statements between a BEGIN and a COMMIT of its own (to
    give them SET LOCAL settings, or commit a record with them): none ends or opens a
    transaction, and each can run inside a block. CALL is left out: a procedure may COMMIT."""
    return all(
        s.kind not in ("TransactionStmt", "CallStmt") and non_transactional(s) is None
        for s in statements
    )
