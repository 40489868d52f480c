"""The embedded PostgreSQL: first use, reuse, stop, concurrent starts, and running as root."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import split_fingerprint

from runner.connect.embedded import SERVICE_USER, EmbeddedServer

pytestmark = pytest.mark.postgres  # every test here starts an embedded server of its own

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="only meaningful when run as root")

PLAN = """\
sqlplan: 1
name: persist
steps:
  - batch: CREATE TABLE IF NOT EXISTS notes (body text); INSERT INTO notes VALUES ('kept')
  - query: SELECT count(*) AS n FROM notes
    row: "{n}"
"""


def sqlplan(
    *args: str, cwd: Path, data_dir: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SQLPLAN_DATA_DIR")}
    if data_dir is not None:
        env["SQLPLAN_DATA_DIR"] = str(data_dir)
    result = subprocess.run(
        [sys.executable, "-m", "runner", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    result.stderr = split_fingerprint(result.stderr)[0]
    return result


@pytest.fixture
def project() -> Iterator[Path]:
    """A project directory the server's user can reach (pytest's own tmp dirs are private)."""
    path = Path(tempfile.mkdtemp(prefix="sqlplan-project-"))
    path.chmod(0o755)  # ours: mkdtemp just made it
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _cleanup(state: Path) -> None:
    EmbeddedServer(state).destroy()


def test_first_use_initialises_then_reuses_stops_and_restarts(project: Path) -> None:
    state = project / ".sqlplan"
    try:
        assert sqlplan("db", "status", cwd=project).stdout.startswith("not initialised")
        (project / "plan.yaml").write_text(PLAN)
        first = sqlplan("run", "plan.yaml", cwd=project)
        assert (first.returncode, first.stdout) == (0, "1\n")
        assert "initialising the embedded PostgreSQL" in first.stderr
        second = sqlplan("run", "plan.yaml", cwd=project)
        assert (second.returncode, second.stdout, second.stderr) == (0, "2\n", "")

        status = sqlplan("db", "status", cwd=project).stdout.splitlines()
        assert status[0].startswith("running (pid ")
        assert status[1] == f"data:   {state / 'postgres' / 'data'}"

        assert sqlplan("db", "stop", cwd=project).stdout == "stopped\n"
        assert sqlplan("db", "stop", cwd=project).stdout == "not running\n"
        assert sqlplan("db", "status", cwd=project).stdout.startswith("stopped")
        # the data survives a stop; a run starts the server again without initialising
        third = sqlplan("run", "plan.yaml", cwd=project)
        assert (third.returncode, third.stdout, third.stderr) == (0, "3\n", "")
        url = sqlplan("db", "url", cwd=project).stdout.strip()
        assert url == f"postgresql://postgres@/postgres?host={state / 'postgres' / 'run'}"
    finally:
        _cleanup(state)
    assert not (state / "postgres").exists()


def test_concurrent_first_starts_share_one_server(project: Path) -> None:
    state = project / "shared-state"
    command = [sys.executable, "-m", "runner", "db", "start", "--data-dir", str(state)]
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    try:
        processes = [
            subprocess.Popen(
                command,
                cwd=project,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(3)
        ]
        results = [(*p.communicate(timeout=120), p.returncode) for p in processes]
        assert [r[2] for r in results] == [0, 0, 0], results
        assert len({r[0] for r in results}) == 1  # the same URL
        initialised = [r for r in results if "initialising" in r[1]]
        assert len(initialised) == 1
    finally:
        _cleanup(state)


def test_a_long_project_path_gets_a_private_socket_directory(project: Path) -> None:
    deep = project / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    for d in (deep.parent, deep):
        d.chmod(0o755)
    state = deep / ".sqlplan"
    try:
        result = sqlplan("db", "start", cwd=deep)
        assert result.returncode == 0, result.stderr
        socket_dir = Path(result.stdout.strip().split("host=", 1)[1])
        assert socket_dir.parent == Path("/tmp")
        assert socket_dir.stat().st_mode & 0o777 == 0o700
        assert len(str(socket_dir / ".s.PGSQL.5432")) < 108
    finally:
        _cleanup(state)
    assert not socket_dir.exists()


@as_root
def test_as_root_the_server_runs_as_the_service_user(project: Path) -> None:
    state = project / ".sqlplan"
    try:
        assert sqlplan("db", "start", cwd=project).returncode == 0
        pid = EmbeddedServer(state).status().pid
        assert pid is not None
        uid = int(
            next(
                line
                for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                if line.startswith("Uid:")
            ).split()[1]
        )
        service = pwd.getpwnam(SERVICE_USER)
        assert uid == service.pw_uid
        assert service.pw_shell.endswith("nologin")
        assert os.getgrouplist(SERVICE_USER, service.pw_gid) == [service.pw_gid]
        assert (state / "postgres").stat().st_uid == service.pw_uid
    finally:
        _cleanup(state)


@as_root
def test_as_root_a_private_parent_is_left_alone(tmp_path: Path) -> None:
    private = tmp_path / "home"
    private.mkdir(mode=0o700)
    private.chmod(0o700)
    (private / "plan.yaml").write_text(PLAN)
    state = private / ".sqlplan"
    server = EmbeddedServer(state)
    try:
        result = sqlplan("run", "plan.yaml", cwd=private)
        assert (result.returncode, result.stdout) == (0, "1\n"), result.stderr
        assert private.stat().st_mode & 0o777 == 0o700
        assert str(server.cluster_dir).startswith("/var/lib/sqlplan/clusters/")
        assert (
            sqlplan("db", "status", cwd=private).stdout.splitlines()[1]
            == f"data:   {server.data_dir}"
        )
    finally:
        cluster = server.cluster_dir
        _cleanup(state)
    assert not cluster.exists()


def _wait_gone(pid: int, seconds: float = 20) -> None:
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return
        if state in ("Z", "X"):
            return
        time.sleep(0.05)


def _zombie() -> int:
    """A child process that has exited and that nobody reaps (until the test ends)."""
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    _wait_gone(pid)
    return pid


def test_a_killed_postmaster_is_not_taken_for_a_live_one(project: Path) -> None:
    state = project / ".sqlplan"
    try:
        (project / "plan.yaml").write_text(PLAN)
        assert sqlplan("run", "plan.yaml", cwd=project, data_dir=state).stdout == "1\n"
        server = EmbeddedServer(state)
        pid = server.status().pid
        assert pid is not None
        os.kill(pid, 9)  # the postmaster.pid stays behind
        _wait_gone(pid)
        result = sqlplan("run", "plan.yaml", cwd=project, data_dir=state)
        assert (result.returncode, result.stdout) == (0, "2\n"), result.stderr
        assert server.status().pid not in (None, pid)
    finally:
        _cleanup(state)


@pytest.mark.parametrize("who", ["zombie", "another program"])
def test_a_stale_pid_file_naming_another_process(project: Path, who: str) -> None:
    """After a `kill -9`, postmaster.pid and the socket stay behind; the PID may since be a
    zombie or another program of the server's user, which PostgreSQL itself would take for a
    live server."""
    state = project / ".sqlplan"
    (project / "plan.yaml").write_text(PLAN)
    other = None
    try:
        assert sqlplan("run", "plan.yaml", cwd=project, data_dir=state).stdout == "1\n"
        server = EmbeddedServer(state)
        lines = (server.data_dir / "postmaster.pid").read_text().splitlines()
        postmaster = int(lines[0])
        os.kill(postmaster, 9)
        _wait_gone(postmaster)
        if who == "zombie":
            pid = _zombie()
        else:
            account: dict[str, object] = {}
            if os.geteuid() == 0:
                entry = pwd.getpwnam(SERVICE_USER)
                account = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
            other = subprocess.Popen(["sleep", "60"], **account)  # type: ignore[call-overload]
            pid = other.pid
        lines[0] = str(pid)
        (server.data_dir / "postmaster.pid").write_text("\n".join(lines) + "\n")
        assert server.status().running is False
        stopped = sqlplan("db", "stop", cwd=project, data_dir=state)
        assert (stopped.returncode, stopped.stdout) == (0, "not running\n")
        if other is not None:
            assert other.poll() is None  # never signalled
        result = sqlplan("run", "plan.yaml", cwd=project, data_dir=state)
        assert (result.returncode, result.stdout) == (0, "2\n"), result.stderr
        assert server.status().pid not in (None, pid)
        if other is not None:
            assert other.poll() is None
    finally:
        if other is not None:
            other.kill()
            other.wait()
        _cleanup(state)


def _initdb_running(under: Path) -> bool:
    """An initdb making a cluster under `under` (another test run's may be running too)."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            words = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            words
            and words[0].endswith(b"initdb")
            and any(b"data.initialising" in w for w in words)
            and any(str(under).encode() in w for w in words)
        ):
            return True
    return False


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGKILL], ids=["Ctrl-C", "kill"])
def test_a_first_initialisation_cut_short_is_made_again(project: Path, signum: int) -> None:
    """Ctrl-C (or a kill) while initdb runs for the first time leaves no half-made cluster:
    the cluster is built aside and moved into place once complete, so the next run simply
    initialises it again."""
    state = project / ".sqlplan"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SQLPLAN_DATA_DIR")}
    (project / "plan.yaml").write_text(PLAN)
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "runner", "run", "plan.yaml"], cwd=project, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while not _initdb_running(state):
            assert time.monotonic() < deadline
            assert process.poll() is None, process.communicate()
            time.sleep(0.005)
        process.send_signal(signum)
        process.communicate(timeout=60)
        assert process.returncode == (130 if signum == signal.SIGINT else -signal.SIGKILL)
        deadline = time.monotonic() + 30  # a killed sqlplan's initdb may still be finishing
        while _initdb_running(state):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        again = sqlplan("run", "plan.yaml", cwd=project)
        assert (again.returncode, again.stdout) == (0, "1\n"), again.stderr
    finally:
        _cleanup(state)
