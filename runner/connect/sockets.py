"""What bounds a connection's waits: TCP keepalives and TCP_USER_TIMEOUT on its socket (libpq's
keepalives* and tcp_user_timeout parameters), and the deadline of one connection attempt
(libpq's connect_timeout: TCP, TLS and the log-in together, not each read)."""

from __future__ import annotations

import contextlib
import socket
import time
from dataclasses import dataclass
from typing import Any

# sqlplan's defaults where the URL says nothing: a peer that vanished (a NAT that forgot the
# connection, a compute gone) is found dead within about a minute, whether the connection is
# idle (keepalives: 30 s, then 3 probes 10 s apart) or has data in flight (tcp_user_timeout).
# libpq leaves all four to the system (Linux: 7200 s idle, 75 s apart, 9 probes; data in
# flight: about 15 minutes of retransmissions).
KEEPALIVES_IDLE = 30
KEEPALIVES_INTERVAL = 10
KEEPALIVES_COUNT = 3
TCP_USER_TIMEOUT_MS = 60_000

TERMINATE = b"X\x00\x00\x00\x04"  # the protocol's goodbye


@dataclass(frozen=True)
class Keepalives:
    """libpq's keepalives, keepalives_idle, keepalives_interval, keepalives_count and
    tcp_user_timeout (milliseconds); 0 for the four numbers: the system's default."""

    enabled: bool = True
    idle: int = KEEPALIVES_IDLE
    interval: int = KEEPALIVES_INTERVAL
    count: int = KEEPALIVES_COUNT
    user_timeout_ms: int = TCP_USER_TIMEOUT_MS


def tune(sock: socket.socket, keepalives: Keepalives | None = None) -> None:
    """Nagle off, and keepalives and the user timeout as asked (TCP sockets only)."""
    k = keepalives or Keepalives()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1 if k.enabled else 0)
    if k.enabled:
        for option, value in (
            (getattr(socket, "TCP_KEEPIDLE", None), k.idle),
            (getattr(socket, "TCP_KEEPINTVL", None), k.interval),
            (getattr(socket, "TCP_KEEPCNT", None), k.count),
        ):
            if option is not None and value > 0:
                sock.setsockopt(socket.IPPROTO_TCP, option, value)
    user_timeout = getattr(socket, "TCP_USER_TIMEOUT", None)
    if user_timeout is not None and k.user_timeout_ms > 0:
        sock.setsockopt(socket.IPPROTO_TCP, user_timeout, k.user_timeout_ms)


class Deadline:
    """The time left for one connection attempt. `left()` raises TimeoutError once it is
    spent; `pause()` and `resume()` leave out a wait that is not the network's (the plans'
    verdict, for the connection opened at start)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._end = time.monotonic() + seconds
        self._paused: float | None = None

    def left(self) -> float:
        if self._paused is not None:
            return max(self._end - self._paused, 0.001)
        remaining = self._end - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("timed out")
        return remaining

    def apply(self, sock: socket.socket) -> None:
        """The socket's next blocking operation waits at most the time left."""
        sock.settimeout(self.left())

    def pause(self) -> None:
        if self._paused is None:
            self._paused = time.monotonic()

    def resume(self) -> None:
        if self._paused is not None:
            self._end += time.monotonic() - self._paused
            self._paused = None


def hang_up(
    sock: socket.socket | None, stream: Any = None, farewell: bytes = b"", linger: float = 0.0
) -> None:
    """Close a connection for good, whatever state it is in: `farewell` (a Terminate) if it
    still goes, then the buffered stream over the socket and the socket itself. A socket with
    a stream (makefile) open keeps its descriptor until both are closed; and a stream left to
    the garbage collector flushes what it holds into a socket closed by then. `linger`: wait
    up to that many seconds for the server to close its end (its backend gone, so no longer
    counted among the server's connections)."""
    if stream is not None:
        if farewell:
            with contextlib.suppress(Exception):
                stream.write(farewell)
                stream.flush()
        with contextlib.suppress(Exception):
            stream.close()  # a failed flush still closes it; what it held is dropped
    elif sock is not None and farewell:
        with contextlib.suppress(Exception):
            sock.sendall(farewell)
    if sock is not None and linger > 0:
        with contextlib.suppress(Exception):
            sock.settimeout(linger)
            while sock.recv(4096):  # until the server's end closes
                pass
    if sock is not None:
        with contextlib.suppress(Exception):
            sock.close()
