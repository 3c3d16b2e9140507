"""Socket frames written in batches, straight to Hypercorn's WebSocket stream.

Why: through Quart and Hypercorn's ASGI path every frame costs a message dict, a signal,
a protocol event, a lock, a shielded cancel scope and a send syscall on the Trio thread,
about 100 µs each: the whole cost of fanning an event out to many sockets. Here the frames
a subscriber has queued are framed by the same wsproto connection Hypercorn uses (so its
extensions, such as permessage-deflate, and its close state stay its own) and go out as one
write through the stream's own `send`, as Hypercorn's `app_send` does for one frame. A
socket with no extension gets the same bytes for a frame as every other such socket, so those
are framed once per frame (`shared_frame`), not once per socket.

Over HTTP/1.1 on a plain socket, that write goes straight to the socket, without a pass of
the scheduler (web/direct_writes.py): per extra socket, a message cost a third of what it
did (bench/messages.py, 49 sockets against 10).

This leans on Hypercorn's WSStream (pinned in uv.lock; tests/test_frame_writer.py fails if
the fast path stops being taken). Served by another ASGI server, or if the stream is not
the shape this module knows, every frame goes through the ASGI `send` one by one.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import trio
from hypercorn.protocol.events import Data
from hypercorn.protocol.ws_stream import ASGIWebsocketState, WSStream
from quart import websocket
from quart_trio.asgi import TrioASGIWebsocketConnection
from wsproto.connection import ConnectionState
from wsproto.events import TextMessage
from wsproto.frame_protocol import FrameProtocol
from wsproto.utilities import LocalProtocolError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable

    from trio_openhands.core.event_log import Subscription

log = logging.getLogger(__name__)

# Frames of up to this many characters are framed once for every plain socket; bigger ones
# (rare) per socket, so that the cache of shared frames stays small (512 entries of at most
# 256 KiB each in UTF-8).
SHARED_FRAME_LIMIT = 64 * 1024

# Where `FrameWritingConnection` leaves the server's own ASGI `send` in a WebSocket's scope.
_SEND_KEY = "trio_openhands.websocket_send"


class FrameWritingConnection(TrioASGIWebsocketConnection):
    """Quart-Trio's WebSocket connection, leaving the server's `send` in the scope for
    `FrameWriter` (Quart keeps it only inside its own per-frame wrapper)."""

    async def __call__(self, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        self.scope[_SEND_KEY] = send  # type: ignore[literal-required]
        await super().__call__(receive, send)


class FrameWriter:
    """Sends text frames on the current WebSocket, many at a time. Made once the socket is
    accepted (Hypercorn's stream has its wsproto connection from then on)."""

    def __init__(self) -> None:
        self._stream = _hypercorn_stream(websocket.scope.get(_SEND_KEY))
        self.frames = 0  # sent so far, and in how many writes (for the socket's last log line)
        self.writes = 0

    async def send(self, texts: Sequence[str]) -> None:
        """Send `texts` as text frames in this order, in one write when possible."""
        stream = self._stream
        if stream is None or stream.closed or stream.state != ASGIWebsocketState.CONNECTED:
            for text in texts:  # the ASGI path: it knows what to do with a closed stream
                await websocket.send(text)
                self.frames += 1
                self.writes += 1
            return
        chunks = frame_all(stream.connection, texts)
        if chunks:
            await stream.send(Data(stream_id=stream.stream_id, data=b"".join(chunks)))
            self.frames += len(chunks)
            self.writes += 1

    def summary(self) -> str:
        """E.g. "812 frames in 97 writes", for the socket's closing log line."""
        return f"{self.frames} frames in {self.writes} write{'' if self.writes == 1 else 's'}"


async def serve_subscription(
    subscription: Subscription,
    read_inbound: Callable[[trio.CancelScope], Awaitable[None]],
    *,
    name: str,
) -> None:
    """Write the subscription's frames in batches on the current (accepted) socket, while
    `read_inbound` handles what the client sends (it cancels the scope it is given when the
    client goes away), then close with the subscription's code. The log says how it ended
    and how the frames went; `name` says which socket ("conversation <id>: socket")."""
    writer = FrameWriter()
    code: int | None = None
    try:
        async with trio.open_nursery() as socket_nursery:
            socket_nursery.start_soon(read_inbound, socket_nursery.cancel_scope)
            async for batch in subscription.batches():
                await writer.send([frame.json for frame in batch])
            socket_nursery.cancel_scope.cancel()
        code = subscription.close_code or 1000
        log.info("%s closing with %d (%s)", name, code, writer.summary())
        await websocket.close(code, subscription.close_reason)
    finally:
        if code is None:
            log.info("%s left by the client (%s)", name, writer.summary())


def frame_all(connection: Any, texts: Sequence[str]) -> list[bytes]:
    """`texts` framed as text messages on the wsproto `connection`, as many as it can send
    (none once it is closing: Hypercorn drops frames then too)."""
    protocol = getattr(connection, "_proto", None)
    if (
        connection.state == ConnectionState.OPEN
        and getattr(protocol, "extensions", None) == []
        and getattr(protocol, "_outbound_opcode", True) is None  # not inside a message
    ):
        return [
            shared_frame(text)
            if len(text) <= SHARED_FRAME_LIMIT
            else connection.send(TextMessage(data=text))
            for text in texts
        ]
    chunks: list[bytes] = []
    for text in texts:
        try:
            chunks.append(connection.send(TextMessage(data=text)))
        except LocalProtocolError:
            break
    return chunks


_PLAIN_SERVER_FRAMES = FrameProtocol(client=False, extensions=[])


@lru_cache(maxsize=512)
def shared_frame(text: str) -> bytes:
    """`text` as one unmasked text frame with no extension: what wsproto makes of it on any
    server connection that negotiated none. Cached: the sockets of a conversation all send
    the same frames within moments (a str keeps its hash, so a hit costs no rehashing)."""
    return bytes(_PLAIN_SERVER_FRAMES.send_data(text, fin=True))


def _hypercorn_stream(send: object) -> Any:
    """Hypercorn's WSStream behind its ASGI `send` (a bound `app_send`), or None."""
    stream = getattr(send, "__self__", None)
    if not isinstance(stream, WSStream) or getattr(send, "__func__", None) is not WSStream.app_send:
        return None
    if not all(hasattr(stream, name) for name in ("connection", "send", "stream_id", "state")):
        log.warning("Hypercorn's WebSocket stream changed shape: frames go one by one")
        return None
    return stream
