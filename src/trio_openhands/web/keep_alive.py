"""The keep-alive timeout of an HTTP/1.1 connection as one deadline, moved, not a task a
request.

Hypercorn times an idle connection with a task (`TCPServer.idle_task`): the connection's
start and every response start one (a lock, a task spawned and waited for), every request
stops it (the lock, a cancellation). That was an eighth of the server's CPU for a small GET
(py-spy, a client GETting in a loop), and four passes of the scheduler for a liveness probe
on a fresh connection: under load, each pass is as long as every other runnable task's
step. Here the connection's protocol puts an `IdleDeadline` in the place of that task: one
task per connection waits on a cancel scope whose deadline a response sets to
`keep_alive_timeout` from now and a request to never. Moving a deadline wakes nobody and
takes no pass. The task closes the connection as Hypercorn's does: when it has been idle
past the deadline, or is idle when the server starts shutting down (or goes idle after).
Over HTTP/2, TLS or another shape of connection, Hypercorn's own timer runs.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import trio
from hypercorn.events import Closed
from hypercorn.protocol.ws_stream import WSStream

from trio_openhands.web.direct_writes import DirectWriteH11Protocol

if TYPE_CHECKING:
    from collections.abc import Callable

    import h11
    from hypercorn.events import Event
    from hypercorn.trio.task_group import TaskGroup
    from hypercorn.trio.tcp_server import TCPServer


class IdleDeadline:
    """Stands in for a TCPServer's `idle_task` (Hypercorn's TrioSingleTask), which the server
    restarts when the connection goes idle and stops when a request comes."""

    def __init__(self, server: TCPServer) -> None:
        self._server = server
        self._waiting: trio.CancelScope | None = None  # the waiting task's, while it waits
        self._idle = False
        self._closed = False

    async def restart(self, task_group: TaskGroup, action: Callable[[], Any]) -> None:
        """Idle from now. (`action` is the server's `_idle_timeout`, which this replaces.)"""
        self._idle = True
        if self._closed:  # nothing left to time, and a waiting task would hold the connection
            return
        deadline = trio.current_time() + self._server.config.keep_alive_timeout
        if self._waiting is None:
            self._waiting = trio.CancelScope(deadline=deadline)
            task_group.spawn(self._close_when_idle_too_long, self._waiting)
        else:
            self._waiting.deadline = deadline

    async def stop(self) -> None:
        """A request: not idle until its answer."""
        self._idle = False
        if self._waiting is not None:
            self._waiting.deadline = math.inf

    def connection_closed(self) -> None:
        """The connection is gone, or is a WebSocket now (no more requests to time)."""
        self._closed = True
        if self._waiting is not None:
            self._waiting.cancel()

    async def _close_when_idle_too_long(self, waiting: trio.CancelScope) -> None:
        with waiting:
            await self._server.context.terminated.wait()
        if self._waiting is waiting:
            self._waiting = None  # the next `restart` waits afresh (after a shutdown: at once)
        if self._idle and not self._closed:
            with trio.CancelScope(shield=True):  # as Hypercorn's own idle timer closes it
                await self._server._initiate_server_close()


class KeepAliveH11Protocol(DirectWriteH11Protocol):
    """Hypercorn's HTTP/1.1 protocol, its connection timed by an `IdleDeadline`. The
    protocol is built before its server first starts the idle timer, so it is in place
    from the connection's start."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._idle_deadline: IdleDeadline | None = None
        if self._tcp_server is not None:
            self._idle_deadline = IdleDeadline(self._tcp_server)
            self._tcp_server.idle_task = self._idle_deadline  # type: ignore[assignment]

    async def handle(self, event: Event) -> None:
        if isinstance(event, Closed) and self._idle_deadline is not None:
            self._idle_deadline.connection_closed()  # the connection is gone: nothing to time
        await super().handle(event)

    async def _create_stream(self, request: h11.Request) -> None:
        await super()._create_stream(request)
        if isinstance(self.stream, WSStream) and self._idle_deadline is not None:
            # A WebSocket's connection ends with the socket: its timer task would only wait,
            # and keep its objects alive (for the garbage collector to walk) that long.
            self._idle_deadline.connection_closed()
