"""The built wheel carries the schema, so an installed sqlplan works outside the source tree."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import ROOT

pytestmark = pytest.mark.slow  # the fast tier (-m "not slow") leaves it out


def test_wheel_ships_the_schema_file(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("sqlplan-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        assert "runner/plan/plan.schema.json" in names
        assert "runner/py.typed" in names
        shipped = archive.read("runner/plan/plan.schema.json")
    assert shipped == (ROOT / "schemas" / "plan.schema.json").read_bytes()
