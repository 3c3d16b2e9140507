"""The server over the shared PostgreSQL store, in the test's own Trio run: what it keeps
in the database, its leases, and its refusal to start on a database it cannot use."""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING

import psycopg
import pytest
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

from tests.conftest import (
    BOTH_STORES,
    LiveServer,
    free_port,
    llm_settings,
    test_settings,
    wait_status,
)
from tests.test_conversations import events_of, message, start
from trio_openhands.server import serve
from trio_openhands.stores.postgres.database import open_database
from trio_openhands.stores.postgres.events import EventStore
from trio_openhands.testing.fake_llm import FakeLLM, finish, text, tool_call

if TYPE_CHECKING:
    from pathlib import Path

POSTGRES = pytest.mark.parametrize("server_settings", ["postgres"], indirect=True)


def _rows(url: str, conversation_id: str) -> tuple[int, int, str]:
    """(SDK files, events, the catalog's record) of the conversation, read directly."""
    key = uuid.UUID(conversation_id)
    with psycopg.connect(url) as connection:
        files = connection.execute(
            "SELECT count(*) FROM sdk_files WHERE conversation_id = %s", (key,)
        ).fetchone()
        events = connection.execute(
            "SELECT count(*) FROM events WHERE conversation_id = %s", (key,)
        ).fetchone()
        meta = connection.execute("SELECT meta FROM conversations WHERE id = %s", (key,)).fetchone()
    assert files is not None
    assert events is not None
    assert meta is not None
    return int(files[0]), int(events[0]), json.dumps(meta[0], sort_keys=True)


async def close_code(socket: WebSocketConnection) -> int | None:
    """Read frames until the socket closes: its close code."""
    try:
        while True:
            await socket.get_message()
    except ConnectionClosed as closed:
        return None if closed.reason is None else closed.reason.code


@POSTGRES
async def test_every_logged_event_is_in_the_events_table_in_order(
    server: LiveServer, fake_llm: FakeLLM
) -> None:
    url = server.settings.database_url
    assert url is not None
    tag = fake_llm.script("stored", [tool_call("terminal", {"command": "echo hi"}), finish("ok")])
    info = await start(server, fake_llm, f"go {tag}", tools=[{"name": "terminal"}])
    await wait_status(server, info["id"], "finished")
    sent = await server.client.post(
        f"/conversations/{info['id']}/events", json=message("noted", run=False)
    )
    assert sent.status_code == 200
    logged = await events_of(server, info["id"])
    with trio.fail_after(10):
        async with open_database(url) as database:
            stored = await EventStore(database).after(uuid.UUID(info["id"]))
    # The message's answer came after it was stored: nothing is missing, in log order, and
    # each row is the frame a socket gets, byte for byte.
    assert [e.seq for e in stored] == list(range(len(logged)))
    assert [json.loads(e.json) for e in stored] == logged
    assert any(e.kind == "MessageEvent" and "noted" in e.json for e in stored[-3:])


@POSTGRES
async def test_a_lost_lease_stops_the_conversation_here_writing_nothing(
    server: LiveServer, fake_llm: FakeLLM
) -> None:
    url = server.settings.database_url
    assert url is not None
    tag = fake_llm.script("taken", [text("slow", delay=30)])
    info = await start(server, fake_llm, f"go {tag}")
    request = await fake_llm.wait_for_request(script="taken", step=0)
    before = _rows(url, info["id"])
    socket_url = server.ws_url(f"/conversations/{info['id']}/events/socket")
    with trio.fail_after(15):
        async with open_websocket_url(socket_url) as socket:
            # Another instance takes the lease over (as a claim after an expiry would).
            with psycopg.connect(url, autocommit=True) as connection:
                connection.execute(
                    "UPDATE leases SET owner = 'another-instance', token = token + 1,"
                    " expires_at = now() + interval '1 hour' WHERE conversation_id = %s",
                    (uuid.UUID(info["id"]),),
                )
            assert await close_code(socket) == 1001  # once the next heartbeat noticed
        assert await request.wait_done() == "aborted"
        # A command here is not served by this instance (the owner is not registered).
        answer = await server.client.post(f"/conversations/{info['id']}/pause")
        assert answer.status_code == 409, answer.text
    assert _rows(url, info["id"]) == before


async def test_a_database_of_a_newer_release_is_refused(tmp_path: Path, postgres_url: str) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute("CREATE TABLE schema_version (version integer PRIMARY KEY)")
        connection.execute("INSERT INTO schema_version VALUES (999)")
    settings = test_settings(tmp_path, database_url=postgres_url, port=free_port())
    with trio.fail_after(30), pytest.raises(ExceptionGroup) as raised:
        await serve(settings, shutdown_trigger=trio.Event())  # ends once the app failed
    assert raised.group_contains(RuntimeError, match="cannot use the database.*999", depth=None)


async def test_a_shared_database_needs_the_shared_secret(tmp_path: Path, postgres_url: str) -> None:
    settings = test_settings(tmp_path, database_url=postgres_url, port=free_port(), secret_key=None)
    with trio.fail_after(30), pytest.raises(ExceptionGroup) as raised:
        await serve(settings, shutdown_trigger=trio.Event())
    assert raised.group_contains(RuntimeError, match="OH_SECRET_KEY", depth=None)


@BOTH_STORES
async def test_listing_shows_what_was_created(server: LiveServer, fake_llm: FakeLLM) -> None:
    body = {"llm": llm_settings(fake_llm), "title": "listed"}
    created = [(await server.client.post("/conversations", json=body)).json() for _ in range(3)]
    found = (await server.client.get("/conversations/search", params={"limit": 2})).json()
    assert [item["id"] for item in found["items"]] == [c["id"] for c in reversed(created)][:2]
    count = await server.client.get("/api/conversations/count")
    assert count.json() == 3
