"""What a run imports of the driver: pg8000, without the SCRAM library it brings for a log-in
sqlplan does itself (asn1crypto alone is a third of pg8000's import time), which still loads
the moment anything uses it."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
import runner.run.engine, runner.run.history, runner.connect.connection
from pg8000 import native
print("asn1crypto" in sys.modules, "scramp.core" in sys.modules)
import pg8000.core
client = pg8000.core.scramp.ScramClient(["SCRAM-SHA-256"], "user", "password")
import scramp
import scramp.core
print(type(client) is scramp.core.ScramClient, scramp is sys.modules["scramp"], hasattr(scramp, "__file__"))
"""


def test_the_driver_loads_without_scramp_until_it_is_used() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    assert done.stdout.splitlines() == ["False False", "True True True"]
