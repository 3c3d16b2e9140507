"""Conversations across failures: LLM errors, restarts (clean and kill -9), many at once."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from tests import stored
from tests.conftest import (
    LiveServer,
    free_port,
    llm_settings,
    start_cli_server,
    start_server,
    test_settings,
    wait_for_event,
    wait_status,
)
from tests.test_conversations import events_of, message, start
from trio_openhands.settings import Settings
from trio_openhands.testing.fake_llm import FakeLLM, finish, http_error, text, tool_call


@pytest.mark.parametrize("status", [500, 429, 401])
async def test_llm_error_ends_the_run_in_error_and_resume_retries(
    server: LiveServer, fake_llm: FakeLLM, status: int
) -> None:
    name = f"fails{status}"
    tag = fake_llm.script(name, [http_error(status, "the LLM is unhappy")])
    info = await start(server, fake_llm, f"hello {tag}")
    await wait_status(server, info["id"], "error")
    errors = [
        e for e in await events_of(server, info["id"]) if e["kind"] == "ConversationErrorEvent"
    ]
    assert errors, "the client can read what went wrong"
    assert (await server.client.get("/alive")).status_code == 200
    fake_llm.script(name, [text("better now")])
    assert (await server.client.post(f"/conversations/{info['id']}/resume")).status_code == 200
    await wait_status(server, info["id"], "finished")


async def test_unreachable_llm_ends_in_error(server: LiveServer, fake_llm: FakeLLM) -> None:
    body = {
        "llm": llm_settings(fake_llm, base_url=f"http://127.0.0.1:{free_port()}/v1"),
        "initial_message": message("anyone there?"),
    }
    info = (await server.client.post("/conversations", json=body)).json()
    await wait_status(server, info["id"], "error")
    assert any(e["kind"] == "ConversationErrorEvent" for e in await events_of(server, info["id"]))


async def test_restart_keeps_status_events_and_the_key(
    nursery: trio.Nursery, server_settings: Settings, fake_llm: FakeLLM
) -> None:
    settings = server_settings
    first = await start_server(nursery, settings)
    tag = fake_llm.script("restart", [text("before restart")])
    info = await start(first, fake_llm, f"one {tag}")
    await wait_status(first, info["id"], "finished")
    events_before = await events_of(first, info["id"])
    await first.aclose()

    at_rest = await trio.to_thread.run_sync(stored.everything, settings)
    assert "gAAAAA" in at_rest  # the key is there, encrypted
    assert "test-key" not in at_rest, "API keys are encrypted at rest"

    second = await start_server(nursery, settings)
    try:
        restored = (await second.client.get(f"/conversations/{info['id']}")).json()
        assert restored["status"] == "finished"
        assert restored["metrics"]["prompt_tokens"] > 0, "known before it is loaded again"
        assert restored["llm"]["api_key"] == "**********"
        assert [e["id"] for e in await events_of(second, info["id"])] == [
            e["id"] for e in events_before
        ]
        fake_llm.script("restart", [text("after restart")])
        await second.client.post(f"/conversations/{info['id']}/events", json=message(f"two {tag}"))
        await wait_status(second, info["id"], "finished")
        last = fake_llm.requests[-1]
        assert last.script == "restart"
        texts = [
            e["llm_message"]["content"][0]["text"]
            for e in await events_of(second, info["id"])
            if e["kind"] == "MessageEvent" and e["source"] == "agent"
        ]
        assert texts[-1] == "after restart"
    finally:
        await second.aclose()


async def test_many_conversations_at_once(server: LiveServer, fake_llm: FakeLLM) -> None:
    tag = fake_llm.script("many", [tool_call("terminal", {"command": "echo many"}), finish()])
    ids: list[str] = []

    async def one(index: int) -> None:
        info = await start(
            server, fake_llm, f"conversation {index} {tag}", tools=[{"name": "terminal"}]
        )
        ids.append(info["id"])
        await wait_status(server, info["id"], "finished")

    async with trio.open_nursery() as nursery:
        for index in range(20):
            nursery.start_soon(one, index)
    assert len(set(ids)) == 20
    page = (await server.client.get("/conversations/search", params={"limit": 100})).json()
    assert {item["id"] for item in page["items"]} >= set(ids)
    batch = (await server.client.get("/conversations", params=[("ids", i) for i in ids])).json()
    assert [item["status"] for item in batch] == ["finished"] * 20


async def test_search_pages_neither_skip_nor_repeat_while_creating(
    server: LiveServer, fake_llm: FakeLLM
) -> None:
    body: dict[str, Any] = {"llm": llm_settings(fake_llm)}
    for _ in range(5):
        assert (await server.client.post("/conversations", json=body)).status_code == 201
    seen: list[str] = []
    for sort_order in ("CREATED_AT", "CREATED_AT_DESC"):
        seen.clear()
        page_id = None
        while True:
            params = {
                "limit": 2,
                "sort_order": sort_order,
                **({"page_id": page_id} if page_id else {}),
            }
            page = (await server.client.get("/conversations/search", params=params)).json()
            seen.extend(item["id"] for item in page["items"])
            await server.client.post("/conversations", json=body)  # created between pages
            page_id = page["next_page_id"]
            if page_id is None:
                break
        assert len(seen) == len(set(seen)), "no repeats"
    all_items = (
        await server.client.get("/conversations/search", params={"sort_order": "CREATED_AT"})
    ).json()
    created = [i["created_at"] for i in all_items["items"]]
    assert created == sorted(created)


async def test_shutdown_mid_llm_call_persists_paused(
    nursery: trio.Nursery, tmp_path: Path, fake_llm: FakeLLM
) -> None:
    """What SIGTERM triggers: the run is paused and persisted, quickly, with its events."""
    settings = test_settings(tmp_path)
    first = await start_server(nursery, settings)
    tag = fake_llm.script("shutdown", [text("never seen", delay=30)])
    info = await start(first, fake_llm, f"hold {tag}")
    request = await fake_llm.wait_for_request(script="shutdown", step=0)
    before = await events_of(first, info["id"])
    started = trio.current_time()
    await first.aclose()
    assert trio.current_time() - started < 2.0
    assert await request.wait_done() == "aborted"
    second = await start_server(nursery, settings)
    try:
        restored = (await second.client.get(f"/conversations/{info['id']}")).json()
        assert restored["status"] == "paused"
        after = await events_of(second, info["id"])
        assert [e["id"] for e in after[: len(before)]] == [e["id"] for e in before]
        assert any(e["kind"] == "InterruptEvent" for e in after)
    finally:
        await second.aclose()


async def test_kill_9_during_a_tool_call_is_reported_and_resumable(
    nursery: trio.Nursery, tmp_path: Path, fake_llm: FakeLLM
) -> None:
    """After kill -9 the half-done tool call is reported to the agent (a tool error result)
    and to the client (an AgentErrorEvent); the conversation is paused and resume goes on."""
    server = await start_cli_server(
        tmp_path,
        wait_for="/ready",
        OPENHANDS_WORKSPACE_DIR=str(tmp_path / "project"),
        OH_SECRET_KEY="crash-test",
    )
    process = server.process
    crashed = LiveServer.of_process(server.port, test_settings(tmp_path))
    try:
        tag = fake_llm.script(
            "crash", [tool_call("terminal", {"command": "sleep 30"}), text("resumed")]
        )
        info = await start(crashed, fake_llm, f"tool {tag}", tools=[{"name": "terminal"}])
        await wait_for_event(crashed, info["id"], lambda e: e["kind"] == "ActionEvent")
        before = await events_of(crashed, info["id"])
    finally:
        await crashed.client.aclose()
        process.kill()
        await process.wait()

    restarted = await start_server(nursery, test_settings(tmp_path, secret_key="crash-test"))
    try:
        listed = (await restarted.client.get(f"/conversations/{info['id']}")).json()
        assert listed["status"] == "paused"
        after = await events_of(restarted, info["id"])
        assert [e["id"] for e in after[: len(before)]] == [e["id"] for e in before]
        errors = [e for e in after if e["kind"] == "AgentErrorEvent"]
        assert errors
        assert errors[-1]["tool_name"] == "terminal"
        assert (
            await restarted.client.post(f"/conversations/{info['id']}/resume")
        ).status_code == 200
        await wait_status(restarted, info["id"], "finished")
        tool_results = [m for m in fake_llm.requests[-1].messages if m.get("role") == "tool"]
        assert tool_results, "the agent saw the interrupted call's result"
    finally:
        await restarted.aclose()


async def test_one_server_per_conversations_directory(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    first = await start_server(nursery, test_settings(tmp_path))
    try:
        with pytest.raises(BaseExceptionGroup) as refused_in_process, trio.fail_after(10):
            async with trio.open_nursery() as second_nursery:  # the failure ends this nursery
                await start_server(second_nursery, test_settings(tmp_path))
        assert "in use by another server process" in _messages(refused_in_process.value)
        env = {**os.environ, "OPENHANDS_CONVERSATIONS_DIR": str(tmp_path / "conversations")}
        command = [sys.executable, "-m", "trio_openhands.cli", "--port", "0"]
        refused = await trio.run_process(command, env=env, capture_stderr=True, check=False)
        assert refused.returncode == 1
        assert b"in use by another server process" in refused.stderr
        assert (await first.client.get("/alive")).status_code == 200
    finally:
        await first.aclose()
    second = await start_server(nursery, test_settings(tmp_path))  # the lock went with the first
    await second.aclose()


def _messages(error: BaseException) -> str:
    """Every message in an exception tree (groups, causes and contexts)."""
    parts = [str(error)]
    if isinstance(error, BaseExceptionGroup):
        parts += [_messages(inner) for inner in error.exceptions]
    for linked in (error.__cause__, error.__context__):
        if linked is not None:
            parts.append(_messages(linked))
    return "\n".join(parts)
