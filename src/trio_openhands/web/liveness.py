"""`GET /alive` and `/health` answered by the connection's protocol, not by the app.

A liveness probe comes on a fresh connection, and through the app it took about nine passes
of the scheduler: the connection's task, its read, the app's task, Quart-Trio's request
tasks. Under the soak each pass lasts as long as every other runnable task's step, and half
of that is waiting for the GIL (the agents' threads hold it), so a probe waited hundreds
of milliseconds (bench/soak.py, Development.md). Here the protocol answers as soon as it
has parsed the request, in the pass that read it: the same status, body and headers the
app sends (Hypercorn adds `date` and `server` to both), through the stream events
Hypercorn's own stream would send, so keep-alive and `keep_alive_max_requests` behave as
for any request.

Only where the app's answer would be exactly that: a GET of exactly `/alive` or `/health`,
without `Origin` (the app adds CORS headers then), with a `Host` the app accepts (its
`accepts_host`, security.py's DNS-rebinding rule), and no access log configured (Hypercorn
writes that line from the stream this replaces). Anything else goes to the app.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from hypercorn.protocol.events import Body, EndBody, Response, StreamClosed
from hypercorn.protocol.h11 import STREAM_ID

from trio_openhands.web.keep_alive import KeepAliveH11Protocol

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    import h11
    from hypercorn.protocol.events import Event as StreamEvent

LIVENESS_PATHS = frozenset({"/alive", "/health"})  # the early app answers these too
LIVENESS_TARGETS = frozenset(path.encode() for path in LIVENESS_PATHS)
ALIVE = {"status": "ok"}  # the answer, wherever it is made (here, early.py, health.py)
BODY = json.dumps(ALIVE).encode()
HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(BODY))]


class LivenessStream:
    """What the protocol talks to in place of Hypercorn's HTTPStream and the app: at the end
    of the request, the answer."""

    def __init__(self, send: Callable[[StreamEvent], Awaitable[None]]) -> None:
        self._send = send

    async def handle(self, event: StreamEvent) -> None:
        if isinstance(event, EndBody):
            stream_id = STREAM_ID
            await self._send(Response(stream_id=stream_id, status_code=200, headers=HEADERS))
            await self._send(Body(stream_id=stream_id, data=BODY))
            await self._send(EndBody(stream_id=stream_id))
            await self._send(StreamClosed(stream_id=stream_id))


class LivenessH11Protocol(KeepAliveH11Protocol):
    """Hypercorn's HTTP/1.1 protocol, answering liveness probes itself (module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        asgi_app = getattr(self.app, "app", None)  # Hypercorn's wrapper holds the ASGI app
        self._accepts_host: Callable[[str], bool] | None = getattr(asgi_app, "accepts_host", None)
        if self.config.log.access_logger is not None:
            self._accepts_host = None

    async def _create_stream(self, request: h11.Request) -> None:
        if not self._is_liveness_probe(request):
            await super()._create_stream(request)
            return
        self.stream = LivenessStream(self.stream_send)  # type: ignore[assignment]
        self.keep_alive_requests += 1
        await self.context.mark_request()

    def _is_liveness_probe(self, request: h11.Request) -> bool:
        if self._accepts_host is None or request.method != b"GET":
            return False
        if request.target not in LIVENESS_TARGETS:
            return False
        host = b""
        for name, value in request.headers:
            if name in (b"origin", b"upgrade"):
                return False
            if name == b"host":
                host = value
        return self._accepts_host(host.decode("latin-1"))
