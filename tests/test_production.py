"""The production run: the Hypercorn CLI itself, with the shipped deploy/hypercorn.toml,
serving `trio_openhands.asgi:create_app()`; SIGTERM during a held LLM call, then a restart."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

from tests.conftest import llm_settings
from tests.server_process import server_process
from trio_openhands.stores import file_store
from trio_openhands.testing.fake_llm import FakeLLM, text

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager

    from tests.server_process import ServerProcess

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "deploy" / "hypercorn.toml"
HYPERCORN = Path(sys.executable).parent / "hypercorn"
APP = "trio_openhands.asgi:create_app()"
# Listening takes about 2 s; the first request needing the SDK waits for its import (7 s).
START_TIMEOUT = 60


def hypercorn_cli(env: dict[str, str], cwd: Path) -> AbstractAsyncContextManager[ServerProcess]:
    """`hypercorn --config deploy/hypercorn.toml --bind 127.0.0.1:0 APP`, until the block ends."""
    command = [str(HYPERCORN), "--config", str(CONFIG), "--bind", "127.0.0.1:0", APP]
    return server_process(command, env=env, cwd=cwd, start_timeout=START_TIMEOUT)


def server_env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "OPENHANDS_CONVERSATIONS_DIR": str(tmp_path / "conversations"),
        "OPENHANDS_WORKSPACE_DIR": str(tmp_path / "project"),
        "OH_SECRET_KEY": "production-test-secret",
    }


async def wait_for_close(socket: WebSocketConnection) -> int | None:
    """Read (status frames may come first) until the socket closes; its close code."""
    try:
        while True:
            await socket.get_message()
    except ConnectionClosed as closed:
        return closed.reason.code if closed.reason is not None else None


async def events_of(client: httpx.AsyncClient, conversation_id: str) -> list[dict[str, Any]]:
    response = await client.get(f"/conversations/{conversation_id}/events/search")
    assert response.status_code == 200, response.text
    return response.json()["items"]


async def test_sigterm_pauses_persists_and_closes_sockets(
    fake_llm: FakeLLM, tmp_path: Path
) -> None:
    env = server_env(tmp_path)
    tag = fake_llm.script("held", [text("too late", delay=5)])
    async with hypercorn_cli(env, tmp_path) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=START_TIMEOUT) as client:
            body = {
                "llm": llm_settings(fake_llm),
                "initial_message": {
                    "role": "user",
                    "content": [{"type": "text", "text": f"hold on {tag}"}],
                },
            }
            created = await client.post("/conversations", json=body)
            assert created.status_code == 201, created.text
            conversation_id = created.json()["id"]
            with trio.fail_after(30):
                request = await fake_llm.wait_for_request(script="held", step=0)
            before = await events_of(client, conversation_id)
        socket_url = server.ws_url(f"/conversations/{conversation_id}/events/socket")
        async with open_websocket_url(socket_url) as socket:
            signalled = trio.current_time()
            server.process.send_signal(signal.SIGTERM)
            with trio.fail_after(5):
                close_code = await wait_for_close(socket)
        # A close frame (1001), not a cut connection (1006): the app closed it itself.
        assert close_code == 1001, server.transcript()
        # The run was paused mid-call: the LLM request was abandoned, not answered.
        with trio.fail_after(5):
            assert await request.wait_done() == "aborted"
        # Exits by itself: the shipped graceful_timeout (2 s), then the worker's interpreter
        # exit (about 1.5 s with the SDK loaded).
        with trio.fail_after(10):
            assert await server.process.wait() == 0, server.transcript()
        stopped_after = trio.current_time() - signalled
    assert stopped_after < 8, f"{stopped_after:.1f} s\n{server.transcript()}"

    # Persisted as paused before the process ended (a crash would leave "running").
    folder = file_store.conversation_dir(
        tmp_path / "conversations", conversation_id.replace("-", "")
    )
    assert json.loads((folder / file_store.META_FILE).read_text())["status"] == "paused"
    assert json.loads((folder / "base_state.json").read_text())["execution_status"] == "paused"

    async with hypercorn_cli(env, tmp_path) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=START_TIMEOUT) as client:
            info = await client.get(f"/conversations/{conversation_id}")
            assert info.status_code == 200, info.text
            assert info.json()["status"] == "paused"
            after = await events_of(client, conversation_id)
        server.process.send_signal(signal.SIGTERM)
        with trio.fail_after(10):
            assert await server.process.wait() == 0, server.transcript()
    # Every event from before the shutdown, unchanged and in order, then the pause.
    assert after[: len(before)] == before
    added = {event["kind"] for event in after[len(before) :]}
    assert added & {"InterruptEvent", "PauseEvent"}, added
    texts = [
        part["text"]
        for event in after
        if event["kind"] == "MessageEvent"
        for part in event["llm_message"]["content"]
    ]
    assert texts == [f"hold on {tag}"]  # no reply was recorded: "too late" never arrived


async def test_several_workers_are_refused(tmp_path: Path) -> None:
    command = [str(HYPERCORN), "--config", str(CONFIG), "--bind", "127.0.0.1:0", "--workers", "2"]
    with trio.fail_after(START_TIMEOUT):
        result = await trio.run_process(
            [*command, APP], env=server_env(tmp_path), cwd=tmp_path, check=False,
            capture_stdout=True, capture_stderr=True,
        )  # fmt: skip
    output = (result.stdout + result.stderr).decode()
    # The workers refuse to build the app (the first to fail gets the others terminated), so
    # nothing serves. Hypercorn 0.18's parent then exits with 0 all the same: no status check.
    assert "one worker process must own a conversations directory" in output, output
    assert "Running on" not in output
