"""sqlplan's CSV reader is PostgreSQL's: random files and options give the same rows as the
server's own COPY of the same bytes, or both refuse (sqlplan with the line and column). Run
against PostgreSQL 18 (embedded) and Debian's PostgreSQL (15), whose COPY differ: before 18 a
line holding only \\. ends CSV data."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from conftest import Server
from csv_oracle import Options, csv_files, postgres_rows, sqlplan_rows
from hypothesis import HealthCheck, example, given, settings
from servers import remove_cluster, require_debian_postgres, start_cluster

from runner.connect.connection import connect
from runner.plan.files import SourceError
from runner.run.wire import csv_end_marker


@pytest.fixture(scope="module", params=["embedded", "debian"])
def con(request: pytest.FixtureRequest, server: Server) -> Iterator[Any]:
    if request.param == "embedded":
        connection = connect(server.target)
        try:
            yield connection
        finally:
            connection.close()
        return
    cluster = start_cluster(require_debian_postgres(), tls=None)
    connection = connect(cluster.admin_target())
    try:
        yield connection
    finally:
        connection.close()
        remove_cluster(cluster)


def agree(con: Any, options: Options, width: int, data: bytes) -> None:
    ours = sqlplan_rows(options, width, data, end_marker=csv_end_marker(con))
    theirs = postgres_rows(con, options, width, data)
    if isinstance(theirs, str):
        assert isinstance(ours, SourceError), (data, theirs, ours)
        return
    if isinstance(ours, SourceError):
        pytest.fail(
            f"{data!r}: PostgreSQL reads {theirs}; sqlplan refuses at {ours.line}:{ours.column}: {ours}"
        )
    assert ours == theirs, data


DEFAULT = Options(header=False, delimiter=",", quote='"', escape='"', null="")


@pytest.mark.slow
@settings(
    max_examples=250,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(case=csv_files())
@example(case=(DEFAULT, 2, b'a,"x""y\nz"\n'))  # a doubled quote and a line break in one field
@example(case=(DEFAULT, 1, b"a\n\n"))  # an empty line is a record of one NULL
@example(case=(DEFAULT, 1, b"a\n\\.\nb\n"))  # \. ends the data before PostgreSQL 18
@example(case=(DEFAULT, 1, b'\\."a\nb"\n'))  # the characters after \. are not looked at again
@example(case=(DEFAULT, 2, b'a"b,c"d,e\n'))  # quotes in the middle of a field
@example(case=(DEFAULT, 1, b"a\r\nb\n"))  # line endings must not change
@example(case=(DEFAULT, 1, b"a\n\\.\n\xff"))  # an encoding error after the end is not read
def test_sqlplan_reads_csv_as_copy_does(con: Any, case: tuple[Options, int, bytes]) -> None:
    agree(con, *case)
