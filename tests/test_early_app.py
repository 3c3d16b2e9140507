"""The early app (web/early.py): `/alive` answers before the full app is loaded, every other
request waits for the full app and gets its answer, and the lifespan runs the full app's.

Driven as Hypercorn drives it (ASGI messages), so that "before the full app is loaded" is a
state the test controls, not a race; tests/test_server.py serves it for real."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

import trio
import trio.testing

from tests.conftest import test_settings
from trio_openhands.web.early import EarlyApp

if TYPE_CHECKING:
    from pathlib import Path


def http_scope(path: str, host: str, method: str = "GET") -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", host.encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "extensions": {},
    }


async def run_lifespan(app: EarlyApp, receive: Any, send: Any) -> None:
    """The app's lifespan, as Hypercorn runs it: messages in through `receive`, out by `send`."""
    await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send)


class Exchange:
    """One request through the app: what it sent back."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.done = trio.Event()

    async def run(self, app: EarlyApp, scope: dict[str, Any]) -> None:
        requests = [{"type": "http.request", "body": b"", "more_body": False}]

        async def receive() -> dict[str, Any]:
            if requests:
                return requests.pop()
            await trio.sleep_forever()  # the client stays connected: no http.disconnect
            raise AssertionError("unreachable")

        async def send(message: dict[str, Any]) -> None:
            self.messages.append(message)

        await app(scope, receive, send)  # type: ignore[arg-type]
        self.done.set()

    @property
    def status(self) -> int:
        return self.messages[0]["status"]

    @property
    def body(self) -> Any:
        return json.loads(b"".join(m.get("body", b"") for m in self.messages[1:]))


async def test_alive_answers_early_and_the_rest_waits_for_the_full_app(tmp_path: Path) -> None:
    app = EarlyApp(test_settings(tmp_path))
    alive = Exchange()
    await alive.run(app, http_scope("/alive", "127.0.0.1:8000"))
    assert (alive.status, alive.body) == (200, {"status": "ok"})
    assert app.app is None  # answered without importing or building anything

    lifespan_in, lifespan_receive = trio.open_memory_channel[dict[str, Any]](math.inf)
    lifespan_send, lifespan_out = trio.open_memory_channel[dict[str, Any]](math.inf)
    async with trio.open_nursery() as nursery:
        # Requests the early app does not answer: a foreign Host, another path.
        foreign = Exchange()
        nursery.start_soon(foreign.run, app, http_scope("/alive", "evil.example:8000"))
        listing = Exchange()
        nursery.start_soon(listing.run, app, http_scope("/conversations/search", "localhost"))
        await trio.testing.wait_all_tasks_blocked()
        assert not foreign.done.is_set()
        assert not listing.done.is_set()

        nursery.start_soon(run_lifespan, app, lifespan_receive.receive, lifespan_send.send)
        await lifespan_in.send({"type": "lifespan.startup"})
        assert (await lifespan_out.receive())["type"] == "lifespan.startup.complete"
        # Asked for port 0 (test_settings), the full app is built with the port bound.
        app.listening_on(8123)
        with trio.fail_after(60):
            await foreign.done.wait()
            await listing.done.wait()
        assert app.app is not None
        assert app.app.settings.port == 8123  # what a PostgreSQL instance registers
        assert foreign.status == 421  # the full app's Host check
        assert (listing.status, listing.body["items"]) == (200, [])

        await lifespan_in.send({"type": "lifespan.shutdown"})
        with trio.fail_after(30):
            assert (await lifespan_out.receive())["type"] == "lifespan.shutdown.complete"
    assert not app.failed.is_set()


async def test_a_shutdown_while_loading_ends_at_once(tmp_path: Path) -> None:
    app = EarlyApp(test_settings(tmp_path))
    lifespan_in, lifespan_receive = trio.open_memory_channel[dict[str, Any]](math.inf)
    lifespan_send, lifespan_out = trio.open_memory_channel[dict[str, Any]](math.inf)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_lifespan, app, lifespan_receive.receive, lifespan_send.send)
        await lifespan_in.send({"type": "lifespan.startup"})
        assert (await lifespan_out.receive())["type"] == "lifespan.startup.complete"
        await lifespan_in.send({"type": "lifespan.shutdown"})
        with trio.fail_after(30):
            assert (await lifespan_out.receive())["type"] == "lifespan.shutdown.complete"
    assert not app.failed.is_set()
