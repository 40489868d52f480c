"""Random CSV files and options, read by sqlplan's CSV reader and by PostgreSQL's own COPY
(FORMAT csv) from the same bytes: the same rows, or both refuse. Shared by tests/plan/test_csv.py
(fast profile) and bench/differential.py (long profile)."""

from __future__ import annotations

import io
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from runner.plan.files import FileSource, SourceError


@dataclass(frozen=True)
class Options:
    header: bool
    delimiter: str
    quote: str
    escape: str
    null: str

    def copy(self) -> str:
        def literal(text: str) -> str:
            return "E'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"

        return (
            f"(FORMAT csv, HEADER {str(self.header).lower()}, DELIMITER {literal(self.delimiter)}, "
            f"QUOTE {literal(self.quote)}, ESCAPE {literal(self.escape)}, NULL {literal(self.null)})"
        )


def _valid(o: Options) -> bool:
    # PostgreSQL's own option checks (sqlplan makes the same at check time; test_csv.py)
    return o.delimiter != o.quote and o.delimiter not in o.null and o.quote not in o.null


OPTIONS = st.builds(
    Options,
    header=st.booleans(),
    delimiter=st.sampled_from([",", ",", ";", "|", "\t", " ", "a", "\\", "'"]),
    quote=st.sampled_from(['"', '"', "'", "|", "x", "\\"]),
    escape=st.sampled_from(['"', "\\", "'", "|", ",", "e"]),
    null=st.sampled_from(["", "", "NULL", "\\N", "x", "n u"]),
).filter(_valid)


@st.composite
def csv_files(draw: st.DrawFn) -> tuple[Options, int, bytes]:
    """Options, a width and file bytes made of the characters that matter to CSV."""
    options = draw(OPTIONS)
    width = draw(st.integers(1, 4))
    pieces = [
        options.delimiter, options.delimiter, options.quote, options.quote, options.escape,
        "\n", "\n", "\r\n", "\r", "\\.", "\\", options.null, "a", "b", "é", " ", "1", ",",
        '"', "''",
    ]  # fmt: skip
    specials = {options.delimiter, options.quote, options.escape, "\r", "\n", "\r\n"}
    safe = [p for p in pieces if not any(c in p for c in "".join(specials))] or ["a"]
    if draw(st.booleans()):
        # mostly well-formed records, some fields quoted, some NULL
        records = []
        for _ in range(draw(st.integers(0, 6))):
            fields = []
            for _ in range(width + draw(st.sampled_from([0, 0, 0, 0, 0, 0, 0, 1, -1]))):
                quoted = draw(st.booleans())
                usable = pieces if quoted or draw(st.integers(0, 3)) == 0 else safe
                text = "".join(draw(st.lists(st.sampled_from(usable), max_size=4)))
                if quoted:
                    inner = (
                        text.replace(options.escape, options.escape * 2)
                        if options.escape != options.quote
                        else text
                    )
                    inner = inner.replace(options.quote, options.escape + options.quote)
                    fields.append(options.quote + inner + options.quote)
                else:
                    fields.append(text)
            records.append(options.delimiter.join(fields))
        ending = draw(st.sampled_from(["\n", "\r\n", "\r"]))
        text = ending.join(records) + (ending if draw(st.booleans()) else "")
    else:
        text = "".join(draw(st.lists(st.sampled_from(pieces), max_size=40)))
    data = text.lstrip("\ufeff").encode()
    if draw(st.integers(0, 9)) == 0:
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.sampled_from([b"\xff", b"\x00", b"\xc3"])) + data[at:]
    return options, width, data


def sqlplan_rows(
    options: Options, width: int, data: bytes, *, end_marker: bool = False
) -> list[tuple[Any, ...]] | SourceError:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "data.csv"
        path.write_bytes(data)
        source = FileSource(
            path=path,
            display="data.csv",
            format="csv",
            header=options.header,
            delimiter=options.delimiter,
            quote=options.quote,
            escape=options.escape,
            null=options.null,
        )
        try:
            return [row for _, row in source.rows(width=width, end_marker=end_marker)]
        except SourceError as e:
            refused = e
        assert refused.line >= 1, refused
        assert refused.column >= 1, refused
        return refused


def postgres_rows(
    con: Any, options: Options, width: int, data: bytes
) -> list[tuple[Any, ...]] | str:
    from pg8000.exceptions import DatabaseError

    columns = ", ".join(f"c{i}" for i in range(1, width + 1))
    con.run("DROP TABLE IF EXISTS csv_oracle")
    con.run(
        f"CREATE TABLE csv_oracle (id serial, {', '.join(f'c{i} text' for i in range(1, width + 1))})"
    )
    try:
        con.run(
            f"COPY csv_oracle ({columns}) FROM STDIN WITH {options.copy()}", stream=io.BytesIO(data)
        )
    except DatabaseError as e:
        return str(e.args[0].get("M"))
    return [tuple(r) for r in con.run(f"SELECT {columns} FROM csv_oracle ORDER BY id")]
