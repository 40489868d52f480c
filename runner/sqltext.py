"""Lexical facts about SQL text: `$n` placeholders and statement boundaries, outside literals."""

from __future__ import annotations

from dataclasses import dataclass

_IDENT_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_$")


@dataclass(frozen=True)
class Placeholder:
    number: int
    offset: int  # 0-based character offset of the `$`


@dataclass(frozen=True)
class SqlFacts:
    placeholders: tuple[Placeholder, ...]
    statement_starts: tuple[int, ...]  # 0-based offsets of each statement's first token

    @property
    def highest_placeholder(self) -> int:
        return max((p.number for p in self.placeholders), default=0)


def scan(sql: str) -> SqlFacts:
    """Find placeholders and statements, skipping strings, quoted names, comments, dollar quotes.

    A lexer, not a parser: it knows PostgreSQL's quoting rules, which is all that counting
    `$n` and `;` correctly needs.
    """
    placeholders: list[Placeholder] = []
    starts: list[int] = []
    in_statement = False
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c in " \t\r\n\f":
            i += 1
            continue
        if sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end < 0 else end + 1
            continue
        if sql.startswith("/*", i):
            i = _skip_block_comment(sql, i)
            continue
        if c == ";":
            in_statement = False
            i += 1
            continue
        if not in_statement:
            starts.append(i)
            in_statement = True
        if c == "'":
            escapes = i > 0 and sql[i - 1] in "eE" and (i < 2 or sql[i - 2] not in _IDENT_CHARS)
            i = _skip_quoted(sql, i, "'", backslash=escapes)
        elif c == '"':
            i = _skip_quoted(sql, i, '"', backslash=False)
        elif c == "$" and (i == 0 or sql[i - 1] not in _IDENT_CHARS):
            j = i + 1
            while j < n and sql[j].isdigit():
                j += 1
            if j > i + 1:
                placeholders.append(Placeholder(int(sql[i + 1 : j]), i))
                i = j
                continue
            tag_end = _dollar_tag_end(sql, i)
            if tag_end is None:
                i += 1
                continue
            tag = sql[i : tag_end + 1]
            close = sql.find(tag, tag_end + 1)
            i = n if close < 0 else close + len(tag)
        elif c in _IDENT_CHARS:
            while i < n and sql[i] in _IDENT_CHARS:
                i += 1
        else:
            i += 1
    return SqlFacts(tuple(placeholders), tuple(starts))


def _skip_block_comment(sql: str, i: int) -> int:
    depth, n = 0, len(sql)
    while i < n:
        if sql.startswith("/*", i):
            depth += 1
            i += 2
        elif sql.startswith("*/", i):
            depth -= 1
            i += 2
            if depth == 0:
                return i
        else:
            i += 1
    return n


def _skip_quoted(sql: str, i: int, quote: str, *, backslash: bool) -> int:
    i, n = i + 1, len(sql)
    while i < n:
        c = sql[i]
        if backslash and c == "\\":
            i += 2
        elif c == quote:
            if i + 1 < n and sql[i + 1] == quote:
                i += 2
            else:
                return i + 1
        else:
            i += 1
    return n


def _dollar_tag_end(sql: str, i: int) -> int | None:
    """The offset of the closing `$` of a dollar-quote tag starting at i, if it is one."""
    j, n = i + 1, len(sql)
    if j < n and (sql[j].isalpha() or sql[j] == "_"):
        while j < n and (sql[j].isalnum() or sql[j] == "_"):
            j += 1
    return j if j < n and sql[j] == "$" else None


def line_at(sql: str, offset: int) -> tuple[str, int]:
    """The line of `sql` holding `offset` (0-based) and the offset's column within it."""
    offset = max(0, min(offset, len(sql)))
    start = sql.rfind("\n", 0, offset) + 1
    end = sql.find("\n", offset)
    return sql[start : len(sql) if end < 0 else end], offset - start
