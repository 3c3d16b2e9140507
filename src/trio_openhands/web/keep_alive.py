"""The keep-alive timeout of an HTTP/1.1 connection as one deadline, moved, not a task a
request.

Hypercorn times an idle keep-alive connection with a task: each request stops it (its lock,
a cancellation, the task's exit) and each response starts a new one (its lock, a task
spawned and waited for). That was an eighth of the server's CPU for a small GET (py-spy,
a client GETting in a loop) and three passes of the scheduler a request. Here, after the
connection's first response, one task per connection waits on a cancel scope whose
deadline a request sets to never and a response to `keep_alive_timeout` from now: moving a
deadline wakes nobody. The task closes the connection as Hypercorn's does: when the
deadline passes, or the server starts shutting down, while the connection is idle. Until
the first response (and over HTTP/2, TLS or another shape of connection) Hypercorn's own
timer runs.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import trio
from hypercorn.events import Closed, Updated

from trio_openhands.web.direct_writes import DirectWriteH11Protocol

if TYPE_CHECKING:
    from hypercorn.events import Event


class KeepAliveH11Protocol(DirectWriteH11Protocol):
    """Hypercorn's HTTP/1.1 protocol with the keep-alive timer the module docstring says."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._idle_deadline: trio.CancelScope | None = None  # ours, once the first answer is out
        self._idle = False
        self._closed = False
        if self._tcp_server is not None:
            self._send_to_server = self.send
            self.send = self._send_timing_idleness

    async def handle(self, event: Event) -> None:
        if isinstance(event, Closed):
            self._closed = True
            if self._idle_deadline is not None:
                self._idle_deadline.cancel()  # the connection is gone: nothing to time
        await super().handle(event)

    async def _send_timing_idleness(self, event: Event) -> None:
        if not isinstance(event, Updated) or self._closed:
            await self._send_to_server(event)
            return
        self._idle = event.idle
        if self._idle_deadline is None:
            if not event.idle:  # the first request: Hypercorn's timer stops
                await self._send_to_server(event)
                return
            self._idle_deadline = trio.CancelScope()
            self.task_group.spawn(self._close_when_idle_too_long, self._idle_deadline)
        self._idle_deadline.deadline = (
            trio.current_time() + self.config.keep_alive_timeout if event.idle else math.inf
        )

    async def _close_when_idle_too_long(self, deadline: trio.CancelScope) -> None:
        with deadline:
            await self.context.terminated.wait()
        # The deadline passed, the server is shutting down, or the connection closed. A
        # request in progress is left to finish: its answer closes a connection then.
        if self._idle and not self._closed and self._tcp_server is not None:
            with trio.CancelScope(shield=True):  # as Hypercorn's own idle timer closes it
                await self._tcp_server._initiate_server_close()
