"""The HTTP side of the ASGI bridge, with the last response message sent shielded.

Quart-Trio runs two tasks per request in one nursery: one reads the request body, one sends
the response, and whichever ends first cancels the other. When a handler answers before
the body has arrived (a 401, 404, 405, 413, 415 or 422 that never reads it), Hypercorn
finishes the response inside our final `send`: the client is still sending, so it puts
`http.disconnect` to the body reader and closes the connection. The reader wakes on that
disconnect and cancels the nursery, which cancels Hypercorn's close half-way: the socket is
left open, h11 waits for a body it will never deliver to anyone, and the next request on
that keep-alive connection is never answered (a raw ASGI app, having no second task, closes
it). Shielding the final `send` lets Hypercorn finish closing; Hypercorn already shields its
own socket writes, so a client that stops reading holds it no longer than before. Such a
response also says `Connection: close`, so that the client does not try to reuse it.

(Hypercorn's own answers to requests it cannot parse: protocol_errors.py.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio
from quart_trio.asgi import TrioASGIHTTPConnection

from trio_openhands.web.protocol_errors import (  # app.py installs it from here
    install_h11_protocol as install_h11_protocol,
)

if TYPE_CHECKING:
    from collections.abc import Iterable

    from hypercorn.typing import (
        ASGIReceiveCallable,
        ASGIReceiveEvent,
        ASGISendCallable,
        ASGISendEvent,
    )
    from quart.wrappers import Request


def _announces_body(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name.lower() == b"content-length" and value.strip() not in (b"", b"0"):
            return True
        if name.lower() == b"transfer-encoding" and b"chunked" in value.lower():
            return True
    return False


class ShieldedEndHTTPConnection(TrioASGIHTTPConnection):
    async def __call__(self, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        body_complete = not _announces_body(self.scope["headers"])

        async def receive_noting_the_end() -> ASGIReceiveEvent:
            nonlocal body_complete
            message = await receive()
            if message["type"] == "http.request" and not message.get("more_body", False):
                body_complete = True
            return message

        async def send_with_shielded_end(message: ASGISendEvent) -> None:
            if message["type"] == "http.response.start" and not body_complete:
                message = {**message, "headers": [*message["headers"], (b"connection", b"close")]}
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                with trio.CancelScope(shield=True):
                    await send(message)
            else:
                await send(message)

        await super().__call__(receive_noting_the_end, send_with_shielded_end)

    async def handle_messages(  # type: ignore[override]
        self, nursery: trio.Nursery, request: Request, receive: ASGIReceiveCallable
    ) -> None:
        """Quart-Trio's body reader, holding each read while a streamed body (a file
        upload: streamed_body.py) has more waiting than its handler has taken, so
        that the client is slowed down instead of the body piling up in memory."""

        async def receive_when_there_is_room() -> ASGIReceiveEvent:
            wait_for_room = getattr(request.body, "wait_for_room", None)
            if wait_for_room is not None:
                await wait_for_room()
            return await receive()

        await super().handle_messages(nursery, request, receive_when_there_is_room)
