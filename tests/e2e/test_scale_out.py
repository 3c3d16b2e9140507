"""Server processes over one PostgreSQL: an owner killed (kill -9) or stopped (SIGSTOP)
mid-run, and another instance taking over its conversation.

Slow (two or three SDK imports per test): run by `make test-e2e`, not `make test`. The faster
in-process tests of the shared store are in tests/test_postgres_server.py.
"""

from __future__ import annotations

import json
import signal
import uuid
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import httpx
import psycopg
import pytest
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

from tests.conftest import llm_settings, start_cli_server
from trio_openhands.testing.fake_llm import FakeLLM, text

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

pytestmark = pytest.mark.e2e

LEASE_SECONDS = 3.0


class Instance:
    def __init__(self, process: trio.Process, port: int) -> None:
        self.process = process
        self.url = f"http://127.0.0.1:{port}"
        self.client = httpx.AsyncClient(base_url=self.url, timeout=30)

    def ws_url(self, path: str) -> str:
        return self.url.replace("http://", "ws://") + path


@asynccontextmanager
async def started(tmp_path: Path, url: str, count: int) -> AsyncIterator[list[Instance]]:
    """`count` server processes over the database at `url`, each with its own directory."""
    env = {
        "OPENHANDS_DATABASE_URL": url,
        "OH_SECRET_KEY": "scale-out-test",
        "OPENHANDS_LEASE_SECONDS": str(LEASE_SECONDS),
        "OPENHANDS_WORKSPACE_DIR": str(tmp_path / "project"),
    }
    instances: list[Instance] = []

    async def one(name: str) -> None:
        directory = tmp_path / name
        directory.mkdir()
        # Each waits for `/ready`: the SDK's import, with the others importing beside it.
        server = await start_cli_server(directory, wait_for="/ready", **env)
        instances.append(Instance(server.process, server.port))

    try:
        async with trio.open_nursery() as nursery:  # they import the SDK at once
            for index in range(count):
                nursery.start_soon(one, "abc"[index])
        yield list(instances)
    finally:
        for instance in instances:
            await instance.client.aclose()
            if instance.process.returncode is None:
                instance.process.send_signal(signal.SIGCONT)
                instance.process.kill()
            with trio.CancelScope(shield=True):
                await instance.process.wait()


class Frames:
    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.close_code: int | None = None
        self.changed = trio.Event()

    async def read(self, socket: WebSocketConnection) -> None:
        try:
            while True:
                self.items.append(json.loads(await socket.get_message()))
                self.changed.set()
        except ConnectionClosed as closed:
            self.close_code = None if closed.reason is None else closed.reason.code
            self.changed.set()

    async def wait_for_status(self, status: str, after: int = 0) -> None:
        """Until an `execution_status` update to `status` arrives past frame `after`."""
        while not any(
            e.get("key") == "execution_status" and e.get("value") == status
            for e in self.items[after:]
        ):
            self.changed = trio.Event()
            await self.changed.wait()

    async def wait_closed(self) -> int | None:
        while self.close_code is None:
            self.changed = trio.Event()
            await self.changed.wait()
        return self.close_code


def snapshot(url: str, conversation_id: str) -> tuple[Any, ...]:
    """Everything of the conversation in the database."""
    key = uuid.UUID(conversation_id)
    with psycopg.connect(url) as connection:
        files = connection.execute(
            "SELECT path, md5(content) FROM sdk_files WHERE conversation_id = %s ORDER BY path",
            (key,),
        ).fetchall()
        events = connection.execute(
            "SELECT seq, event_id FROM events WHERE conversation_id = %s ORDER BY seq", (key,)
        ).fetchall()
        meta = connection.execute("SELECT meta FROM conversations WHERE id = %s", (key,)).fetchall()
    return tuple(files), tuple(events), json.dumps(meta, sort_keys=True, default=str)


async def create(instance: Instance, fake_llm: FakeLLM, tag: str) -> str:
    body = {
        "llm": llm_settings(fake_llm),
        "initial_message": {"role": "user", "content": [{"type": "text", "text": f"go {tag}"}]},
    }
    created = await instance.client.post("/conversations", json=body)
    assert created.status_code == 201, created.text
    return created.json()["id"]


async def test_kill_9_of_the_owner_mid_llm_call_another_instance_takes_over(
    tmp_path: Path, postgres_url: str, fake_llm: FakeLLM
) -> None:
    async with started(tmp_path, postgres_url, 3) as (a, b, c):
        cid = await create(a, fake_llm, fake_llm.script("first", [text("one")]))
        on_c = Frames()
        path = f"/conversations/{cid}/events/socket?resend_all=true"
        with trio.fail_after(90):
            async with open_websocket_url(c.ws_url(path)) as socket, trio.open_nursery() as readers:
                readers.start_soon(on_c.read, socket)
                await on_c.wait_for_status("finished")
                # A message on B (forwarded to A, the owner) starts a run held in its LLM call.
                before_message = len(on_c.items)
                held = fake_llm.script("killed", [text("never", delay=60)])
                body = {"role": "user", "content": [{"type": "text", "text": held}]}
                sent = await b.client.post(f"/conversations/{cid}/events", json=body)
                assert sent.status_code == 200, sent.text
                await fake_llm.wait_for_request(script="killed", step=0)
                for instance in (a, b, c):  # every instance lists it
                    listed = (await instance.client.get("/conversations/search")).json()
                    assert [item["id"] for item in listed["items"]] == [cid]
                await on_c.wait_for_status("running", after=before_message)
                seen_before_kill = len(on_c.items)
                a.process.kill()
                killed_at = trio.current_time()
                # A sweeper (B's or C's) claims the conversation once A's lease expired and
                # restores it: its `paused` reaches the socket on C through the store.
                await on_c.wait_for_status("paused", after=seen_before_kill)
                took = trio.current_time() - killed_at
                for instance in (b, c):
                    info = (await instance.client.get(f"/conversations/{cid}")).json()
                    assert info["status"] == "paused"
                fake_llm.script("killed", [text("finished after the takeover")])
                resumed = await b.client.post(f"/conversations/{cid}/resume")
                assert resumed.status_code == 200, resumed.text
                await on_c.wait_for_status("finished", after=seen_before_kill)
                readers.cancel_scope.cancel()
        print(f"taken over {took:.2f} s after kill -9 (lease {LEASE_SECONDS:g} s)")
        assert took <= LEASE_SECONDS + 2, f"taken over {took:.1f} s after the kill"
        logged = (await b.client.get(f"/conversations/{cid}/events/search")).json()["items"]
        # Every event the socket saw before the kill is in the log, in order, once.
        assert on_c.items[:seen_before_kill] == logged[:seen_before_kill]
        assert len({e["id"] for e in on_c.items}) == len(on_c.items)
        assert any("finished after the takeover" in json.dumps(e) for e in logged)


async def test_an_owner_stopped_past_its_lease_writes_nothing_once_taken_over(
    tmp_path: Path, postgres_url: str, fake_llm: FakeLLM
) -> None:
    async with started(tmp_path, postgres_url, 2) as (a, b):
        # The answer arrives while A is stopped: A reads it when continued, and must not
        # store any of it.
        tag = fake_llm.script("stopped", [text("late answer", delay=LEASE_SECONDS)])
        cid = await create(a, fake_llm, tag)
        await fake_llm.wait_for_request(script="stopped", step=0)
        on_a, on_b = Frames(), Frames()
        path = f"/conversations/{cid}/events/socket?resend_all=true"
        with trio.fail_after(60):
            async with (
                open_websocket_url(a.ws_url(path)) as socket_a,
                open_websocket_url(b.ws_url(path)) as socket_b,
                trio.open_nursery() as readers,
            ):
                readers.start_soon(on_a.read, socket_a)
                readers.start_soon(on_b.read, socket_b)
                await on_b.wait_for_status("running")
                seen = len(on_b.items)
                a.process.send_signal(signal.SIGSTOP)
                await on_b.wait_for_status("paused", after=seen)  # B took it over
                taken_over = await trio.to_thread.run_sync(snapshot, postgres_url, cid)
                a.process.send_signal(signal.SIGCONT)
                # A's next heartbeat finds the lease gone and stops the conversation there.
                assert await on_a.wait_closed() == 1001
                readers.cancel_scope.cancel()
        assert await trio.to_thread.run_sync(snapshot, postgres_url, cid) == taken_over
        assert not any("late answer" in json.dumps(e) for e in on_b.items)
