"""The server over the shared PostgreSQL store, in the test's own Trio run: what it keeps
in the database, its leases, and its refusal to start on a database it cannot use."""

from __future__ import annotations

import json
import uuid
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

from tests.conftest import (
    LiveServer,
    llm_settings,
    start_server,
    test_settings,
    wait_status,
)
from tests.test_conversations import events_of, message, start
from trio_openhands.server import serve
from trio_openhands.stores.postgres.database import open_database
from trio_openhands.stores.postgres.events import EventStore
from trio_openhands.testing.fake_llm import FakeLLM, finish, text, tool_call

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

POSTGRES = pytest.mark.parametrize("server_settings", ["postgres"], indirect=True)


async def _rows(url: str, conversation_id: str) -> tuple[int, int, str]:
    """(SDK files, events, the catalog's record) of the conversation, read directly (in a
    worker thread: the server under test shares this Trio thread)."""
    return await trio.to_thread.run_sync(_blocking_rows, url, conversation_id)


async def _execute(url: str, statement: str, *params: object) -> None:
    """Run a statement directly, in a worker thread (see `_rows`)."""

    def blocking() -> None:
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute(statement, params)  # type: ignore[arg-type]

    await trio.to_thread.run_sync(blocking)


def _blocking_rows(url: str, conversation_id: str) -> tuple[int, int, str]:
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


def _settings_blob(url: str) -> bytes:
    with psycopg.connect(url) as connection:
        row = connection.execute("SELECT content FROM blobs WHERE name = 'settings.json'")
        return bytes(row.fetchone()[0])  # type: ignore[index]


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
    socket_url = server.ws_url(f"/conversations/{info['id']}/events/socket")
    with trio.fail_after(15):
        async with open_websocket_url(socket_url) as socket:
            # Another instance takes the lease over (as a claim after an expiry would).
            await _execute(
                url,
                "UPDATE leases SET owner = 'another-instance', token = token + 1,"
                " expires_at = now() + interval '1 hour' WHERE conversation_id = %s",
                uuid.UUID(info["id"]),
            )
            # Whatever was written before the takeover committed is all there will be: a
            # write racing with it either committed first or is refused by its fence.
            before = await _rows(url, info["id"])
            assert await close_code(socket) == 1001  # once the next heartbeat noticed
        assert await request.wait_done() == "aborted"
        # A command here is not served by this instance (the owner is not registered).
        answer = await server.client.post(f"/conversations/{info['id']}/pause")
        assert answer.status_code == 409, answer.text
    assert await _rows(url, info["id"]) == before


async def test_a_database_of_a_newer_release_is_refused(tmp_path: Path, postgres_url: str) -> None:
    await _execute(postgres_url, "CREATE TABLE schema_version (version integer PRIMARY KEY)")
    await _execute(postgres_url, "INSERT INTO schema_version VALUES (999)")
    settings = test_settings(tmp_path, database_url=postgres_url)
    with trio.fail_after(30), pytest.raises(ExceptionGroup) as raised:
        await serve(settings, shutdown_trigger=trio.Event())  # ends once the app failed
    assert raised.group_contains(RuntimeError, match="cannot use the database.*999", depth=None)


async def test_a_shared_database_needs_the_shared_secret(tmp_path: Path, postgres_url: str) -> None:
    settings = test_settings(tmp_path, database_url=postgres_url, secret_key=None)
    with trio.fail_after(30), pytest.raises(ExceptionGroup) as raised:
        await serve(settings, shutdown_trigger=trio.Event())
    assert raised.group_contains(RuntimeError, match="OH_SECRET_KEY", depth=None)


async def test_listing_shows_what_was_created(server: LiveServer, fake_llm: FakeLLM) -> None:
    body = {"llm": llm_settings(fake_llm), "title": "listed"}
    created = [(await server.client.post("/conversations", json=body)).json() for _ in range(3)]
    found = (await server.client.get("/conversations/search", params={"limit": 2})).json()
    assert [item["id"] for item in found["items"]] == [c["id"] for c in reversed(created)][:2]
    count = await server.client.get("/api/conversations/count")
    assert count.json() == 3


@asynccontextmanager
async def two_instances(
    nursery: trio.Nursery, tmp_path: Path, postgres_url: str
) -> AsyncIterator[tuple[LiveServer, LiveServer]]:
    """Two servers in this process over one database, each with its own directories, shut
    down when the block ends (a test may stop one earlier: `aclose` again is a no-op)."""
    servers: list[LiveServer] = []
    try:
        for name in ("a", "b"):
            settings = test_settings(tmp_path / name, database_url=postgres_url, lease_seconds=3.0)
            servers.append(await start_server(nursery, settings))
        yield servers[0], servers[1]
    finally:
        for server in servers:
            await server.aclose()


class Frames:
    """What a socket received, and a way to wait until it has received `count` frames."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.close_code: int | None = None
        self._changed = trio.Event()

    async def read(self, socket: WebSocketConnection) -> None:
        try:
            while True:
                self.items.append(json.loads(await socket.get_message()))
                self._changed.set()
        except ConnectionClosed as closed:
            self.close_code = None if closed.reason is None else closed.reason.code

    async def wait_for(self, count: int) -> None:
        while len(self.items) < count:
            self._changed = trio.Event()
            await self._changed.wait()


async def test_any_instance_serves_a_conversation_another_runs(
    nursery: trio.Nursery, tmp_path: Path, postgres_url: str, fake_llm: FakeLLM
) -> None:
    async with two_instances(nursery, tmp_path, postgres_url) as (a, b):
        tag = fake_llm.script("shared", [text("one")])
        info = await start(a, fake_llm, f"hello {tag}")
        cid = info["id"]
        await wait_status(a, cid, "finished")
        socket_path = f"/conversations/{cid}/events/socket?resend_all=true"
        on_a_frames, on_b_frames, api_on_b = Frames(), Frames(), Frames()
        with trio.fail_after(30):
            async with (
                open_websocket_url(b.ws_url(socket_path)) as on_b,
                open_websocket_url(a.ws_url(socket_path)) as on_a,
                open_websocket_url(b.ws_url(f"/sockets/events/{cid}?resend_all=true")) as api_b,
                trio.open_nursery() as readers,
            ):
                readers.start_soon(on_b_frames.read, on_b)
                readers.start_soon(on_a_frames.read, on_a)
                readers.start_soon(api_on_b.read, api_b)
                # B lists A's conversation, and forwards its commands to A.
                listed = (await b.client.get("/conversations/search")).json()["items"]
                assert [item["id"] for item in listed] == [cid]
                assert (await b.client.get(f"/conversations/{cid}")).json()["status"] == "finished"
                held = fake_llm.script("held", [text("two", delay=30)])
                sent = await b.client.post(f"/conversations/{cid}/events", json=message(held))
                assert sent.status_code == 200, sent.text
                request = await fake_llm.wait_for_request(script="held", step=0)
                paused = await b.client.post(f"/conversations/{cid}/pause")
                assert paused.status_code == 200, paused.text
                assert paused.json()["status"] == "paused"
                assert (await b.client.get(f"/conversations/{cid}")).json()["status"] == "paused"
                assert await request.wait_done() == "aborted"
                logged = await events_of(a, cid)
                # B reads the events from the store: the owner's pages, byte for byte.
                assert await events_of(b, cid) == logged
                for params in (
                    {"kind": "MessageEvent", "limit": 2},
                    {"sort_order": "TIMESTAMP_DESC", "limit": 3, "page_id": logged[-2]["id"]},
                    {"body": "ONE", "source": "agent"},
                ):
                    path = f"/conversations/{cid}/events/search"
                    owner_page = (await a.client.get(path, params=params)).text
                    assert (await b.client.get(path, params=params)).text == owner_page
                one = await b.client.get(f"/conversations/{cid}/events/{logged[1]['id']}")
                assert one.json() == logged[1]
                batch = await b.client.get(
                    f"/conversations/{cid}/events", params={"event_ids": [logged[0]["id"], "x"]}
                )
                assert batch.json() == [logged[0], None]
                unknown = await b.client.get(
                    f"/conversations/{cid}/events/search", params={"page_id": "nope"}
                )
                assert unknown.status_code == 400
                api = f"/api/conversations/{cid}/events"
                for path, params in (
                    (f"{api}/search", {"kind": "MessageEvent"}),
                    (f"{api}/count", {"source": "agent"}),
                    (f"{api}/{logged[0]['id']}", {}),
                    (api, {"event_ids": [logged[2]["id"], "missing"]}),
                ):
                    owner_answer = await a.client.get(path, params=params)
                    answer = await b.client.get(path, params=params)
                    assert (answer.status_code, answer.text) == (200, owner_answer.text)
                await on_b_frames.wait_for(len(logged))  # the followers caught up
                await api_on_b.wait_for(len(logged))
                deleted = await b.client.delete(f"/conversations/{cid}")
                assert deleted.status_code == 200, deleted.text
        assert (on_a_frames.close_code, on_b_frames.close_code) == (4004, 4004)
        assert api_on_b.close_code == 4004
        assert api_on_b.items == logged  # the /api socket on B: the same frames
        # The socket on B (from the store) got every event once, in order, as A's log has it.
        assert on_b_frames.items == logged
        assert on_a_frames.items == logged
        assert (await a.client.get(f"/conversations/{cid}")).status_code == 404
        assert (await b.client.get(f"/conversations/{cid}")).status_code == 404


async def test_a_stopped_owners_conversation_is_served_by_another_instance(
    nursery: trio.Nursery, tmp_path: Path, postgres_url: str, fake_llm: FakeLLM
) -> None:
    async with two_instances(nursery, tmp_path, postgres_url) as (a, b):
        tag = fake_llm.script("moved", [text("on a")])
        info = await start(a, fake_llm, f"hello {tag}")
        await wait_status(a, info["id"], "finished")
        before = await events_of(a, info["id"])
        await a.aclose()  # a clean stop releases its leases: B claims at once
        ran = await b.client.post(
            f"/api/conversations/{info['id']}/bash/execute_bash_command",
            json={"command": "echo from-b"},
        )
        assert ran.status_code == 200, ran.text  # its workspace routes, on B
        assert "from-b" in ran.text
        fake_llm.script("moved", [text("on b")])
        sent = await b.client.post(f"/conversations/{info['id']}/events", json=message(tag))
        assert sent.status_code == 200, sent.text
        await wait_status(b, info["id"], "finished")
        after = await events_of(b, info["id"])
        assert after[: len(before)] == before
        assert after[-1]["kind"] == "ConversationStateUpdateEvent"
        assert any("on b" in json.dumps(e) for e in after[len(before) :])


async def test_settings_and_secrets_are_the_same_on_every_instance(
    nursery: trio.Nursery, tmp_path: Path, postgres_url: str
) -> None:
    async with two_instances(nursery, tmp_path, postgres_url) as (a, b):
        changed = await a.client.patch("/api/settings", json={"misc_settings_diff": {"k": 1}})
        assert changed.status_code == 200, changed.text
        secret = {"name": "GITHUB_TOKEN", "value": "ghp-shared-value", "description": "git"}
        assert (await b.client.put("/api/settings/secrets", json=secret)).status_code == 200
        assert (await b.client.get("/api/settings")).json()["misc_settings"] == {"k": 1}
        value = await a.client.get("/api/settings/secrets/GITHUB_TOKEN")
        assert value.text == "ghp-shared-value"
        stored = await trio.to_thread.run_sync(_settings_blob, postgres_url)
        assert b"ghp-shared-value" not in stored  # encrypted with the server secret
