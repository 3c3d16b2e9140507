"""Live-server tests of the conversation API: real Hypercorn, httpx, the scripted LLM
reached through litellm, real tools."""

from __future__ import annotations

import contextlib
import os
import threading
import uuid
from typing import Any

import trio

from tests import stored
from tests.conftest import LiveServer, llm_settings, wait_for_event, wait_status
from trio_openhands.testing.fake_llm import FakeLLM, finish, text, tool_call


def message(text_: str, run: bool = True) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "text", "text": text_}], "run": run}


async def start(
    server: LiveServer, fake_llm: FakeLLM, first: str | None, **body: Any
) -> dict[str, Any]:
    request: dict[str, Any] = {"llm": llm_settings(fake_llm), **body}
    if first is not None:
        request["initial_message"] = message(first)
    response = await server.client.post("/conversations", json=request)
    assert response.status_code == 201, response.text
    return response.json()


async def events_of(server: LiveServer, conversation_id: str) -> list[dict[str, Any]]:
    response = await server.client.get(f"/conversations/{conversation_id}/events/search")
    assert response.status_code == 200, response.text
    return response.json()["items"]


async def test_text_reply_runs_to_finished(server: LiveServer, fake_llm: FakeLLM) -> None:
    tag = fake_llm.script("hello", [text("Hi there!")])
    info = await start(server, fake_llm, f"say hi {tag}")
    assert info["llm"]["api_key"] == "**********"
    assert "test-key" not in str(info)
    done = await wait_status(server, info["id"], "finished")
    assert done["metrics"]["prompt_tokens"] > 0
    kinds = [e["kind"] for e in await events_of(server, info["id"])]
    assert "SystemPromptEvent" in kinds
    agent_messages = [
        e
        for e in await events_of(server, info["id"])
        if e["kind"] == "MessageEvent" and e["source"] == "agent"
    ]
    assert agent_messages[-1]["llm_message"]["content"][0]["text"] == "Hi there!"


async def test_terminal_tool_really_runs(server: LiveServer, fake_llm: FakeLLM) -> None:
    tag = fake_llm.script(
        "echo", [tool_call("terminal", {"command": "echo trio-was-here"}), finish("ok")]
    )
    info = await start(server, fake_llm, f"run echo {tag}", tools=[{"name": "BashTool"}])
    await wait_status(server, info["id"], "finished")
    observations = [
        e for e in await events_of(server, info["id"]) if e["kind"] == "ObservationEvent"
    ]
    assert any("trio-was-here" in str(o["observation"]) for o in observations)


async def test_confirmation_mode_waits_without_running_the_action(
    server: LiveServer, fake_llm: FakeLLM
) -> None:
    tag = fake_llm.script(
        "confirm", [tool_call("terminal", {"command": "touch confirmed.txt"}), finish()]
    )
    info = await start(
        server, fake_llm, f"go {tag}", tools=[{"name": "terminal"}], confirmation_mode=True
    )
    await wait_status(server, info["id"], "waiting_for_confirmation")
    kinds = [e["kind"] for e in await events_of(server, info["id"])]
    assert "ActionEvent" in kinds
    assert "ObservationEvent" not in kinds
    assert not (server.settings.workspace_dir / "confirmed.txt").exists()


async def test_a_new_message_supersedes_an_action_waiting_for_approval(
    server: LiveServer, fake_llm: FakeLLM
) -> None:
    tag = fake_llm.script("sneaky", [tool_call("terminal", {"command": "touch sneaky.txt"})])
    info = await start(
        server, fake_llm, f"go {tag}", tools=[{"name": "terminal"}], confirmation_mode=True
    )
    await wait_status(server, info["id"], "waiting_for_confirmation")
    fake_llm.script("sneaky", [text("ok, not doing it")])
    sent = await server.client.post(
        f"/conversations/{info['id']}/events", json=message(f"never mind {tag}")
    )
    assert sent.status_code == 200
    await wait_status(server, info["id"], "finished")
    rejections = [
        e for e in await events_of(server, info["id"]) if e["kind"] == "UserRejectObservation"
    ]
    assert rejections[0]["rejection_reason"] == "Superseded by a new user message"
    assert not (server.settings.workspace_dir / "sneaky.txt").exists()


async def test_pause_aborts_the_llm_call_in_flight(server: LiveServer, fake_llm: FakeLLM) -> None:
    tag = fake_llm.script(
        "slow", [tool_call("terminal", {"command": "touch ran.txt"}, delay=3), finish()]
    )
    info = await start(server, fake_llm, f"slow {tag}", tools=[{"name": "terminal"}])
    request = await fake_llm.wait_for_request(script="slow", step=0)
    response = await server.client.post(f"/conversations/{info['id']}/pause")
    assert response.status_code == 200
    assert response.json()["status"] == "paused"
    assert (await server.client.get(f"/conversations/{info['id']}")).json()["status"] == "paused"
    with trio.fail_after(5):
        assert await request.wait_done() == "aborted"
    kinds = [e["kind"] for e in await events_of(server, info["id"])]
    assert "InterruptEvent" in kinds or "PauseEvent" in kinds
    assert "ActionEvent" not in kinds
    assert "ObservationEvent" not in kinds
    assert not (server.settings.workspace_dir / "ran.txt").exists()
    # A second pause is a no-op.
    again = await server.client.post(f"/conversations/{info['id']}/pause")
    assert again.status_code == 200
    assert again.json()["status"] == "paused"


async def test_resume_after_pause_runs_to_finished(server: LiveServer, fake_llm: FakeLLM) -> None:
    tag = fake_llm.script("resume", [text("first", delay=3)])
    info = await start(server, fake_llm, f"hello {tag}")
    await fake_llm.wait_for_request(script="resume", step=0)
    await server.client.post(f"/conversations/{info['id']}/pause")
    fake_llm.script("resume", [text("after resume")])
    sent = await server.client.post(
        f"/conversations/{info['id']}/events", json=message(f"again {tag}", run=False)
    )
    assert sent.status_code == 200
    assert (await server.client.post(f"/conversations/{info['id']}/resume")).status_code == 200
    await wait_status(server, info["id"], "finished")
    texts = [
        e["llm_message"]["content"][0]["text"]
        for e in await events_of(server, info["id"])
        if e["kind"] == "MessageEvent"
    ]
    assert texts[-1] == "after resume"
    assert any("again" in t for t in texts)


async def test_delete_during_a_run_leaves_nothing_behind(
    server: LiveServer, fake_llm: FakeLLM
) -> None:
    threads_before = {t.name for t in threading.enumerate()}
    # A duration of its own: other tests' `sleep`s (a kill -9 test's orphan) may be running.
    sleeper = f"sleep {30 + uuid.uuid4().int % 1000 / 1000:.3f}"
    # It ignores the hang-up a closed terminal sends: only a kill ends it.
    command = f"trap '' HUP; {sleeper}"
    tag = fake_llm.script("busy", [tool_call("terminal", {"command": command}), finish()])
    info = await start(server, fake_llm, f"busy {tag}", tools=[{"name": "terminal"}])
    await wait_status(server, info["id"], "running")
    assert await trio.to_thread.run_sync(stored.conversation_bytes, server.settings, info["id"])
    # Wait until the tool call is in progress: its ActionEvent is logged.
    await wait_for_event(server, info["id"], lambda e: e["kind"] == "ActionEvent")
    if server.settings.database_url is None:  # its events pack is open (stores/event_pack.py)
        assert held_files(info["id"])
    response = await server.client.delete(f"/conversations/{info['id']}")
    assert response.status_code == 200
    assert (await server.client.get(f"/conversations/{info['id']}")).status_code == 404
    assert (await server.client.delete(f"/conversations/{info['id']}")).status_code == 404
    left = await trio.to_thread.run_sync(stored.conversation_bytes, server.settings, info["id"])
    assert left == []
    assert held_files(info["id"]) == []
    leftover = [
        t.name for t in threading.enumerate() if t.name.startswith(f"conversation-{info['id'][:8]}")
    ]
    assert leftover == []
    assert {t.name for t in threading.enumerate()} - threads_before <= {
        t for t in threads_before
    } | {t.name for t in threading.enumerate() if not t.name.startswith("conversation-")}
    ps = await trio.run_process(["ps", "-eo", "args"], capture_stdout=True)
    assert sleeper.encode() not in ps.stdout


def held_files(conversation_id: str) -> list[str]:
    """The files of the conversation this process holds open."""
    hex_id = uuid.UUID(conversation_id).hex
    held: list[str] = []
    for descriptor in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # closed meanwhile
            if hex_id in (target := os.readlink(f"/proc/self/fd/{descriptor}")):
                held.append(target)
    return held


async def test_unknown_and_malformed_ids(server: LiveServer) -> None:
    missing = await server.client.get("/conversations/00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404
    assert "detail" in missing.json()
    malformed = await server.client.get("/conversations/not-a-uuid")
    assert malformed.status_code == 422
    assert malformed.json()["detail"][0]["loc"] == ["path", "conversation_id"]
    bad_tool = await server.client.post(
        "/conversations", json={"llm": {"model": "x"}, "tools": [{"name": "nope"}]}
    )
    assert bad_tool.status_code == 422
    assert bad_tool.json()["detail"][0]["loc"] == ["body", "tools", 0, "name"]
    assert "nope" in bad_tool.json()["detail"][0]["msg"]
    unknown_page = await server.client.get("/conversations/search", params={"page_id": "abc"})
    assert unknown_page.status_code == 400


async def test_secrets_are_never_stored_or_shown_in_plain_text(
    server: LiveServer, fake_llm: FakeLLM
) -> None:
    mcp_config = {
        "example": {"command": "example-mcp", "env": {"EXAMPLE_TOKEN": "mcp-secret-value"}}
    }
    info = await start(server, fake_llm, None, mcp_config=mcp_config)
    shown = (await server.client.get(f"/conversations/{info['id']}")).json()
    assert "mcp-secret-value" not in str(shown)
    assert "test-key" not in str(shown)
    at_rest = await trio.to_thread.run_sync(stored.conversation_bytes, server.settings, info["id"])
    assert at_rest  # something to look into: the record and the SDK's state at least
    for content in at_rest:
        assert b"mcp-secret-value" not in content
        assert b"test-key" not in content
