"""Liveness probes answered by the HTTP/1.1 protocol (web/liveness.py): the same answer the
app gives, with no app task; a request the app would answer differently still goes to it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import trio.lowlevel

from tests.conftest import STORE_INDEPENDENT
from tests.test_keep_alive import SpawnedNames

if TYPE_CHECKING:
    import httpx

    from tests.conftest import LiveServer

APP_TASK = "hypercorn.trio.task_group._handle"  # the task Hypercorn runs the app in


def headers_but_date(response: httpx.Response) -> list[tuple[str, str]]:
    return [(name, value) for name, value in response.headers.items() if name != "date"]


async def get_watching_tasks(
    server: LiveServer, path: str, headers: dict[str, str] | None = None
) -> tuple[httpx.Response, list[str]]:
    """GET `path`, and the names of the tasks spawned meanwhile."""
    spawned = SpawnedNames()
    trio.lowlevel.add_instrument(spawned)
    try:
        response = await server.client.get(path, headers=headers)
    finally:
        trio.lowlevel.remove_instrument(spawned)
    return response, spawned.names


@STORE_INDEPENDENT
@pytest.mark.parametrize("path", ["/alive", "/health"])
async def test_a_probe_gets_the_apps_answer_without_the_app(server: LiveServer, path: str) -> None:
    through_app, app_tasks = await get_watching_tasks(server, f"{path}?from=test")
    probe, probe_tasks = await get_watching_tasks(server, path)
    assert APP_TASK in app_tasks, "a query string: the app's route answers"
    assert APP_TASK not in probe_tasks, "the protocol answers"
    assert probe.status_code == through_app.status_code == 200
    assert probe.content == through_app.content == b'{"status": "ok"}'
    assert headers_but_date(probe) == headers_but_date(through_app)
    assert probe.headers["date"]


@STORE_INDEPENDENT
async def test_a_probe_the_app_answers_otherwise_goes_to_the_app(server: LiveServer) -> None:
    # A foreign name in Host: the DNS-rebinding rule's 421, from the app.
    refused, tasks = await get_watching_tasks(server, "/alive", {"Host": "evil.example"})
    assert refused.status_code == 421
    assert APP_TASK in tasks
    # A browser page's request: the app's CORS headers.
    origin = "http://localhost:3000"
    cors, tasks = await get_watching_tasks(server, "/alive", {"Origin": origin})
    assert cors.status_code == 200
    assert cors.headers["access-control-allow-origin"] == origin
    assert APP_TASK in tasks
