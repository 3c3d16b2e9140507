"""A listener that accepts every connection waiting in the kernel's queue at once.

Why: Trio's `SocketListener` accepts one connection per pass of the scheduler (its accept
ends with a checkpoint). Under load a pass takes 50-150 ms, so when a few hundred clients
connect together (a fleet of sockets reconnecting after a deploy, a dashboard opening many
conversations) they wait in the accept queue for seconds, a liveness probe among them:
bench/soak.py saw the queue reach 180 and drain at 25 connections a second, and `/alive`
take up to 9 s. This one waits until the socket is readable, then accepts until the queue
is empty, and hands the connections out without another pass.

Errors are Trio's: the per-connection ones it ignores are skipped, the rest (EMFILE and
the like) are raised once the connections accepted before them have been handed out.
"""

from __future__ import annotations

import errno
import socket as stdlib_socket
from collections import deque

import trio

# The accept errors that concern one connection only, as Trio's SocketListener skips them.
_SKIPPED_ERRNOS = {
    getattr(errno, name)
    for name in (
        "EPERM",
        "ECONNABORTED",
        "EPROTO",
        "ENETDOWN",
        "ENOPROTOOPT",
        "EHOSTDOWN",
        "ENONET",
        "EHOSTUNREACH",
        "EOPNOTSUPP",
        "ENETUNREACH",
        "ENOSR",
        "ESOCKTNOSUPPORT",
        "EPROTONOSUPPORT",
        "ETIMEDOUT",
        "ECONNRESET",
    )
    if hasattr(errno, name)
}


class DrainingListener(trio.abc.Listener[trio.SocketStream]):
    """Accepts on a listening stdlib socket; `accept` returns connections already taken
    from the queue without a checkpoint, and waits only when none are left."""

    def __init__(self, sock: stdlib_socket.socket) -> None:
        sock.setblocking(False)
        self.socket = sock
        self._accepted: deque[stdlib_socket.socket] = deque()
        self._error: OSError | None = None

    async def accept(self) -> trio.SocketStream:
        while not self._accepted:
            if self._error is not None:
                error, self._error = self._error, None
                raise error
            await trio.lowlevel.wait_readable(self.socket)
            self._drain()
        return trio.SocketStream(trio.socket.from_stdlib_socket(self._accepted.popleft()))

    def _drain(self) -> None:
        while True:
            try:
                connection, _ = self.socket.accept()
            except BlockingIOError:
                return
            except OSError as error:
                if error.errno in _SKIPPED_ERRNOS:
                    continue
                self._error = error
                return
            self._accepted.append(connection)

    async def aclose(self) -> None:
        trio.lowlevel.notify_closing(self.socket)
        self.socket.close()
        while self._accepted:  # taken from the queue but never handed to a handler
            self._accepted.popleft().close()
        await trio.lowlevel.checkpoint()
