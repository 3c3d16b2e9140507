"""The keep-alive timer of an HTTP/1.1 connection (web/keep_alive.py): an idle connection is
closed once it has been idle for `keep_alive_timeout` after its last answer, a request that
takes longer than that is answered whole, and a shutdown closes an idle connection at once."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import h11
import httpx
import trio
import trio.lowlevel
import trio.testing
from trio_websocket import open_websocket_url

from tests.conftest import STORE_INDEPENDENT, start_server, test_settings
from tests.test_direct_writes import get, read_response
from tests.test_events import create
from tests.test_sockets import socket_path
from trio_openhands.server import hypercorn_config
from trio_openhands.settings import Settings

if TYPE_CHECKING:
    from pathlib import Path

    from tests.conftest import LiveServer
    from trio_openhands.testing.fake_llm import FakeLLM

KEEP_ALIVE = 0.3
TIMER_TASK = "IdleDeadline._close_when_idle_too_long"


class SpawnedNames(trio.abc.Instrument):
    """The names of the tasks spawned while it is installed."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def task_spawned(self, task: trio.lowlevel.Task) -> None:
        self.names.append(task.name)


async def connect(server: LiveServer) -> trio.SocketStream:
    parts = urlsplit(server.url)
    return await trio.open_tcp_stream(parts.hostname or "127.0.0.1", parts.port or 80)


async def closed_by_the_server(stream: trio.SocketStream) -> bool:
    """Read until the server closes the connection (True) or the test gives up (False)."""
    with trio.move_on_after(10):
        while await stream.receive_some(4096):
            pass
        return True
    return False


async def test_an_idle_connection_closes_once_idle_for_the_keep_alive_timeout(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    server = await start_server(nursery, test_settings(tmp_path, keep_alive_timeout=KEEP_ALIVE))
    try:
        spawned = SpawnedNames()
        trio.lowlevel.add_instrument(spawned)
        stream = await connect(server)
        client = h11.Connection(h11.CLIENT)
        asked = trio.current_time()
        for _ in range(3):  # each on the same connection: its timer restarts at each answer
            # The server answers (and its timer starts) after this, before the client reads
            # the answer: the idle time is counted from here, which is never too late.
            asked = trio.current_time()
            await get(stream, client, "/alive")
            assert await read_response(stream, client) == (200, b'{"status": "ok"}')
            client.start_next_cycle()
        trio.lowlevel.remove_instrument(spawned)
        # One timer task for the connection, none of Hypercorn's (one a response).
        timers = [name for name in spawned.names if name.endswith(TIMER_TASK)]
        assert len(timers) == 1
        assert not [name for name in spawned.names if name.endswith("TCPServer._idle_timeout")]
        assert await closed_by_the_server(stream)
        assert trio.current_time() - asked >= KEEP_ALIVE
        await stream.aclose()
    finally:
        await server.aclose()


async def test_a_request_longer_than_the_keep_alive_timeout_is_answered_whole(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    server = await start_server(nursery, test_settings(tmp_path, keep_alive_timeout=KEEP_ALIVE))
    try:
        for _ in range(2):  # the second on a connection that has been idle, then busy
            started = trio.current_time()
            answer = await server.client.post(
                "/api/bash/execute_bash_command", json={"command": "sleep 0.6; echo slept"}
            )
            assert trio.current_time() - started > 2 * KEEP_ALIVE
            assert answer.status_code == 200
            assert answer.json()["stdout"] == "slept\n"
    finally:
        await server.aclose()


async def test_a_shutdown_closes_an_idle_connection_at_once(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    # A grace period far beyond the test's patience: an idle connection left open would
    # hold the stop for all of it.
    server = await start_server(nursery, test_settings(tmp_path, graceful_timeout=30.0))
    stream = await connect(server)
    client = h11.Connection(h11.CLIENT)
    for _ in range(2):
        await get(stream, client, "/alive")
        assert await read_response(stream, client) == (200, b'{"status": "ok"}')
        client.start_next_cycle()
    with trio.fail_after(10):
        await server.aclose()
        assert await closed_by_the_server(stream)
    await stream.aclose()


def live_tasks_named(suffix: str) -> int:
    """How many of this run's tasks have a name ending with `suffix`."""
    count, tasks = 0, [trio.lowlevel.current_root_task()]
    while tasks:
        task = tasks.pop()
        if task is not None:
            count += task.name.endswith(suffix)
            tasks += [child for nursery in task.child_nurseries for child in nursery.child_tasks]
    return count


@STORE_INDEPENDENT
async def test_a_websocket_connection_keeps_no_timer_task(
    server: LiveServer, fake_llm: FakeLLM
) -> None:
    conversation_id = await create(server, fake_llm)
    timers = live_tasks_named(TIMER_TASK)  # the HTTP connections' own
    async with open_websocket_url(server.ws_url(socket_path(conversation_id))):
        await trio.testing.wait_all_tasks_blocked()
        assert live_tasks_named(TIMER_TASK) == timers


def test_the_keep_alive_timeout_is_read_from_the_environment() -> None:
    settings = Settings.from_env({"OPENHANDS_KEEP_ALIVE_TIMEOUT": "2.5"})
    assert hypercorn_config(settings).keep_alive_timeout == 2.5
    assert hypercorn_config(Settings.from_env({})).keep_alive_timeout == 65.0


def test_an_idle_connection_outlives_the_clients_pool_entry() -> None:
    """The official clients' pool (httpx) drops an idle connection after its
    `keepalive_expiry`; the server must not close it first, or a request the client sends
    on it as it closes gets no answer (seen: `Server disconnected without sending a
    response` on a POST, under load)."""
    assert Settings().keep_alive_timeout > 2 * httpx.Limits().keepalive_expiry  # type: ignore[operator]
