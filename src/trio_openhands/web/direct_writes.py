"""Hypercorn's HTTP/1.1 socket writes, made at once when the socket takes them.

Every write Hypercorn makes on a connection goes through `TCPServer.protocol_send`, which
takes the connection's send lock and then sends: two passes of the scheduler, each putting
the writing task at the back of the run queue. A plain response is three writes (status
line and headers, body, end of body), so six passes; under load a pass waits for every
other runnable task (a round of the soak's scheduler is tens of milliseconds:
bench/soak.py). Here a write is one `os.write` when the lock is free and the socket takes
it all, the usual case, with no pass; the rest of a partial write goes as Hypercorn sends
(shielded `send_all`, under the lock); an empty write (the end of a body of known length) is
not made. A WebSocket's frames (web/frame_writer.py) go the same way.

A task that only writes does not yield while sockets take its bytes; a socket's buffer is
bounded, so it yields once that is full, and every handler here awaits something else
between writes (a channel, a file read).

This leans on Hypercorn's H11Protocol and Trio TCPServer (pinned in uv.lock;
tests/test_direct_writes.py fails if the writes stop being made here). Over TLS, HTTP/2 or
another shape of connection, every write goes through Hypercorn's `protocol_send`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import h11
import trio
from hypercorn.events import Closed, RawData
from hypercorn.protocol.events import Data
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.trio.tcp_server import TCPServer

if TYPE_CHECKING:
    from hypercorn.protocol.events import Event as StreamEvent
    from hypercorn.typing import H11SendableEvent


@dataclass
class WriteCounts:
    """Writes made on plain HTTP/1.1 connections since the process started: at once (the
    socket took all), in part (the rest followed when the socket had room), or through
    Hypercorn (its send lock was held by another write)."""

    at_once: int = 0
    in_part: int = 0
    through_hypercorn: int = 0


COUNTS = WriteCounts()


class DirectWriteH11Protocol(H11Protocol):
    """Hypercorn's HTTP/1.1 protocol, writing as the module docstring says."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._tcp_server = _plain_tcp_server(self.send)

    async def stream_send(self, event: StreamEvent) -> None:
        if isinstance(event, Data):  # a WebSocket's frames, framed by its stream
            await self._write(event.data)
        else:
            await super().stream_send(event)

    async def _send_h11_event(self, event: H11SendableEvent) -> None:
        try:
            data = self.connection.send(event)
        except h11.LocalProtocolError:
            if self.connection.their_state != h11.ERROR:
                raise
        else:
            await self._write(data or b"")

    async def _write(self, data: bytes) -> None:
        server = self._tcp_server
        if server is None:
            await self.send(RawData(data=data))
        elif data and not await _write_at_once(server, data):
            COUNTS.through_hypercorn += 1
            await self.send(RawData(data=data))


async def _write_at_once(server: TCPServer, data: bytes) -> bool:
    """Write `data` as `protocol_send` does (under its lock, the rest shielded, a broken
    connection handed to the protocol as closed), without a scheduler pass when the socket
    takes it all. False, nothing written, when another write holds the lock."""
    lock = server.send_lock
    if lock.locked():
        return False
    lock.acquire_nowait()
    try:
        stream = server.stream
        try:
            try:
                sent = os.write(stream.socket.fileno(), data)  # Trio's sockets don't block
            except BlockingIOError:
                sent = 0
            if sent < len(data):
                COUNTS.in_part += 1
                with trio.CancelScope(shield=True):
                    await stream.send_all(memoryview(data)[sent:])
            else:
                COUNTS.at_once += 1
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            await server.protocol.handle(Closed())
    finally:
        lock.release()
    return True


def _plain_tcp_server(send: object) -> TCPServer | None:
    """The Trio TCPServer whose `protocol_send` is `send`, when it serves a plain socket
    (not TLS); None otherwise."""
    server = getattr(send, "__self__", None)
    if (
        isinstance(server, TCPServer)
        and getattr(send, "__func__", None) is TCPServer.protocol_send
        and isinstance(getattr(server, "stream", None), trio.SocketStream)
        and isinstance(getattr(server, "send_lock", None), trio.Lock)
    ):
        return server
    return None
