"""The app Hypercorn serves from the moment it binds, before the full app is imported.

Importing the full app (Quart, Flask inside it, quart-schema, every route module) takes
longer than everything else start-up does, and none of it is needed to say the process is
alive. So `openhands-server` binds with this small ASGI app in front: its lifespan startup
completes at once (Hypercorn binds only after that), then, in the lifespan's nursery, it
imports the full app in a worker thread, builds it and runs the full app's own lifespan
(the supervisor starts there). Until then it answers `GET /alive` and `/health` itself
(when `Host` passes the DNS-rebinding rule of security.py, which web/hosts.py holds
without Quart), and every other request waits for the full app, which then handles it as
usual: a client sees a slower first answer, never a wrong one. `/ready` is the full app's,
so it says 503 until the supervisor and the SDK are loaded.

If the full app fails to start, requests get a JSON 503 and `failed` is set: `serve` then
shuts down and raises the error.

With port 0 the kernel chooses the port as Hypercorn binds, after this app's lifespan has
started: the full app is built once `listening_on` has told it the port, so what it
derives from the address (the address a PostgreSQL instance registers for forwarding) is
the one it listens on.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import trio

from trio_openhands.web.hosts import host_is_allowed
from trio_openhands.web.liveness import ALIVE, LIVENESS_PATHS
from trio_openhands.web.protocol_errors import install_h11_protocol

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, Scope

    from trio_openhands.settings import Settings
    from trio_openhands.web.app import OpenHandsApp

log = logging.getLogger(__name__)

EARLY_PATHS = LIVENESS_PATHS


class EarlyApp:
    """An ASGI app that becomes the full app (`web.app.create_app(settings)`) once it is
    loaded; see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        *,
        shutdown_requested: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.settings = settings
        self._shutdown_requested = shutdown_requested
        self.app: OpenHandsApp | None = None
        self.settled = trio.Event()  # the full app serves, or failed to start
        self.failed = trio.Event()
        self.error: BaseException | None = None
        self._port_known = trio.Event()
        if settings.port != 0:
            self._port_known.set()
        install_h11_protocol()  # before the first connection, not with the app

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        if self.app is None and self._answers_early(scope):
            await _send_json(send, 200, ALIVE)
            return
        await self.settled.wait()
        if self.app is not None:
            await self.app(scope, receive, send)  # type: ignore[arg-type]
        elif scope["type"] == "http":
            await _send_json(send, 503, {"detail": "The server failed to start"})
        else:  # a WebSocket refused before acceptance: Hypercorn answers 403
            await send({"type": "websocket.close", "code": 1011, "reason": ""})

    async def begin_shutdown(self) -> None:
        """The full app's `begin_shutdown` (pause runs, close sockets), once it serves."""
        if self.app is not None:
            await self.app.begin_shutdown()

    def listening_on(self, port: int) -> None:
        """The port Hypercorn bound: the full app's settings have it when asked for port 0."""
        if self.settings.port == 0:
            self.settings = replace(self.settings, port=port)
        self._port_known.set()

    def accepts_host(self, host: str) -> bool:
        """Whether the full app's `Host` rule (security.py) lets this name in."""
        return host_is_allowed(host, self.settings)

    def _answers_early(self, scope: Scope) -> bool:
        if scope["type"] != "http" or scope["path"] not in EARLY_PATHS:
            return False
        if scope["method"] not in ("GET", "HEAD"):
            return False
        host = next((v for k, v in scope["headers"] if k == b"host"), b"").decode("latin-1")
        return self.accepts_host(host)

    async def _lifespan(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        message = await receive()
        if message["type"] != "lifespan.startup":
            return
        # What the full app's lifespan receives (its startup now, the shutdown later) and
        # what it answers.
        to_app, app_receives = trio.open_memory_channel[Any](math.inf)
        app_answers, from_app = trio.open_memory_channel[Any](math.inf)
        to_app.send_nowait(message)
        async with trio.open_nursery() as nursery:
            await send({"type": "lifespan.startup.complete"})
            nursery.start_soon(self._load, scope, app_receives, app_answers, from_app)
            message = await receive()  # lifespan.shutdown, when Hypercorn has stopped serving
            if self.app is None:  # still loading, or failed: nothing to shut down
                nursery.cancel_scope.cancel()
            else:
                await to_app.send(message)
                answer = await from_app.receive()
                if answer["type"] == "lifespan.shutdown.failed":
                    log.error("shutdown failed: %s", answer.get("message", ""))
        await send({"type": "lifespan.shutdown.complete"})

    async def _load(
        self,
        scope: Scope,
        app_receives: trio.MemoryReceiveChannel[Any],
        app_answers: trio.MemorySendChannel[Any],
        from_app: trio.MemoryReceiveChannel[Any],
    ) -> None:
        """Import and build the full app, then run its lifespan, which lives until the
        lifespan shutdown: its first answer says whether it started."""
        try:
            module = await trio.to_thread.run_sync(
                importlib.import_module, "trio_openhands.web.app"
            )
            await self._port_known.wait()
            app: OpenHandsApp = module.create_app(
                self.settings, shutdown_requested=self._shutdown_requested
            )
            async with trio.open_nursery() as nursery:

                async def run_lifespan() -> None:
                    async with app_answers:
                        await app(scope, app_receives.receive, app_answers.send)  # type: ignore[arg-type]

                nursery.start_soon(run_lifespan)
                answer = await from_app.receive()
                if answer["type"] != "lifespan.startup.complete":
                    raise RuntimeError(answer.get("message") or "the app's startup failed")
                self.app = app
                self.settled.set()
        except Exception as error:
            log.exception("the app failed to start" if self.app is None else "the app failed")
            self.error = error
            self.failed.set()
            self.settled.set()


async def _send_json(send: ASGISendCallable, status: int, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(payload))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload, "more_body": False})
