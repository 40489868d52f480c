"""The CSV reader's fast way (whole lines at a time) reads what its one-record-at-a-time way
reads, however the text is cut into blocks: the same records at the same lines, or the same
error at the same line and column. test_csv.py holds the one-at-a-time way to PostgreSQL's
COPY; this holds the fast way to it, over the options and shapes that file generates, with
records that run across block boundaries."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from csv_oracle import Options, csv_files
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from runner.plan.csv_reader import CsvReader
from runner.plan.reading import SourceError

DEFAULT = Options(header=False, delimiter=",", quote='"', escape='"', null="")


def _blocks(text: str, cuts: list[int]) -> Iterator[str]:
    start = 0
    for cut in sorted(set(cuts)):
        if start < cut < len(text):
            yield text[start:cut]
            start = cut
    if start < len(text):
        yield text[start:]


def _read(
    options: Options, text: str, cuts: list[int], *, by_lines: bool, end_marker: bool
) -> tuple[list[Any], Any]:
    reader = CsvReader(
        _blocks(text, cuts),
        delimiter=options.delimiter,
        quote=options.quote,
        escape=options.escape,
        null=options.null,
        end_marker=end_marker,
    )
    reader._by_lines = reader._by_lines and by_lines
    records: list[Any] = []
    try:
        if options.header and not reader.skip_line():
            return records, None
        for line, values in reader.records():
            # where each field starts, as the errors about a record's width report it
            columns = [reader.column_of_field(i, line) for i in range(len(values) + 1)]
            records.append((line, values, columns))
    except SourceError as e:
        return records, (str(e), e.line, e.column)
    return records, None


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=csv_files(), cuts=st.lists(st.integers(0, 200), max_size=8), marker=st.booleans())
@example(case=(DEFAULT, 2, b'a,"x""y\nz"\nb,c\n'), cuts=[3, 9], marker=False)
@example(case=(DEFAULT, 1, b'"a\nb\nc"\nd\n'), cuts=[2], marker=False)
@example(case=(DEFAULT, 1, b"a\r\nb\nc\r\n"), cuts=[], marker=False)
@example(case=(DEFAULT, 1, b"a\n\\.\nb\n"), cuts=[2], marker=True)
def test_whole_lines_read_as_one_record_at_a_time(
    case: tuple[Options, int, bytes], cuts: list[int], marker: bool
) -> None:
    options, _, data = case
    try:
        text = data.decode()
    except UnicodeDecodeError:
        text = data.decode(errors="replace")
    text = text.replace("\0", "")
    slow = _read(options, text, [], by_lines=False, end_marker=marker)
    assert _read(options, text, [], by_lines=True, end_marker=marker) == slow
    assert _read(options, text, cuts, by_lines=True, end_marker=marker) == slow
    assert _read(options, text, cuts, by_lines=False, end_marker=marker) == slow


def test_a_long_file_in_small_blocks_reads_the_same() -> None:
    """Many records, quoted line breaks and doubled quotes among them, cut into blocks smaller
    than a record: the fast way picks up after every unfinished record."""
    lines = []
    for i in range(3000):
        title = f'"Book, {i} ""the"" one"' if i % 4 == 0 else f"Book {i}"
        if i % 50 == 0:
            title = f'"multi\nline\n{i}"'
        lines.append(f"{title},Author {i % 97},{'' if i % 7 == 0 else 1900 + i % 120}")
    text = "\n".join(lines) + "\n"
    cuts = list(range(0, len(text), 37))
    slow = _read(DEFAULT, text, [], by_lines=False, end_marker=False)
    assert len(slow[0]) == 3000
    assert slow[1] is None
    assert _read(DEFAULT, text, cuts, by_lines=True, end_marker=False) == slow
    assert _read(DEFAULT, text, [], by_lines=True, end_marker=False) == slow
