"""The `/goal` loop (the TypeScript client's startGoal, stopGoal, resumeGoal) against the
scripted LLM: the agent's runs are the conversation's own, the judge is a request without
tools (the scripted LLM's default reply), and each step is a logged `goal` state update."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
import trio

from tests.conftest import LiveServer, start_server, test_settings, wait_for_event, wait_status
from tests.test_api_dialect import create, events_of
from trio_openhands.testing.fake_llm import FakeLLM, text

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

COMPLETE = json.dumps({"score": 1.0, "complete": True, "missing": ""})


def goal_status(status: str, iteration: int | None = None) -> Callable[[dict[str, Any]], bool]:
    def matches(event: dict[str, Any]) -> bool:
        if event.get("kind") != "ConversationStateUpdateEvent" or event.get("key") != "goal":
            return False
        value = event["value"]
        return value["status"] == status and iteration in (None, value["iteration"])

    return matches


async def goal_updates(server: LiveServer, conversation_id: str) -> list[tuple[str, int, bool]]:
    return [
        (e["value"]["status"], e["value"]["iteration"], e["value"]["active"])
        for e in await events_of(server, conversation_id)
        if e["kind"] == "ConversationStateUpdateEvent" and e["key"] == "goal"
    ]


async def test_goal_stop_leaves_the_run_and_resume_completes_it(
    server: LiveServer, nursery: trio.Nursery
) -> None:
    judge = FakeLLM(default=text(COMPLETE))  # every judge call: the goal is done
    await nursery.start(judge.serve)
    tag = judge.script("goal-stop", [text("working on it", delay=1)])
    info = await create(server, judge, title="no autotitle request")
    base = f"/api/conversations/{info['id']}"
    started = await server.client.post(f"{base}/goal", json={"objective": f"ship it {tag}"})
    assert started.status_code == 200, started.text
    await judge.wait_for_request(script="goal-stop", step=0)  # the first run's call is held
    again = await server.client.post(f"{base}/goal", json={"objective": "another"})
    assert again.status_code == 409
    assert (await server.client.post(f"{base}/goal/resume")).status_code == 409

    assert (await server.client.post(f"{base}/goal/stop")).status_code == 200
    assert (await server.client.get(base)).json()["execution_status"] == "running"  # not paused
    await wait_status(server, info["id"], "finished")
    assert await goal_updates(server, info["id"]) == [
        ("running", 0, True),
        ("interrupted", 0, False),
    ]

    assert (await server.client.post(f"{base}/goal/resume")).status_code == 200
    await wait_for_event(server, info["id"], goal_status("complete"))
    assert (await goal_updates(server, info["id"]))[2:] == [
        ("running", 0, True),
        ("complete", 1, False),
    ]
    resumed = [r for r in judge.requests if r.script == "goal-stop" and r.step is not None]
    assert "Resuming a goal" in str(resumed[-1].messages)  # the SDK's resume prompt
    nothing = await server.client.post(f"{base}/goal/resume")
    assert nothing.status_code == 400  # the last goal is complete


async def test_goal_follows_up_until_capped(server: LiveServer, fake_llm: FakeLLM) -> None:
    tag = fake_llm.script("goal-capped", [text("round one"), text("round two")])
    info = await create(server, fake_llm, title="no autotitle request")
    base = f"/api/conversations/{info['id']}"
    body = {"objective": f"make it so {tag}", "max_iterations": 2}
    assert (await server.client.post(f"{base}/goal", json=body)).status_code == 200
    capped = await wait_for_event(server, info["id"], goal_status("capped"))
    # The scripted judge's "OK" is no verdict: not complete, so one follow-up, then the cap.
    assert capped["value"]["verdict"]["complete"] is False
    assert await goal_updates(server, info["id"]) == [
        ("running", 0, True),
        ("running", 1, True),
        ("capped", 2, False),
    ]
    second = await fake_llm.wait_for_request(script="goal-capped", step=1)
    assert "The goal is NOT yet complete" in str(second.messages)
    blank = await server.client.post(f"{base}/goal", json={"objective": "   "})
    assert blank.status_code == 422
    assert blank.json()["detail"][0]["loc"] == ["body", "objective"]


async def test_a_users_message_supersedes_the_goal(server: LiveServer, fake_llm: FakeLLM) -> None:
    tag = fake_llm.script("goal-superseded", [text("never sent", delay=30)])
    info = await create(server, fake_llm, title="no autotitle request")
    base = f"/api/conversations/{info['id']}"
    assert (await server.client.post(f"{base}/goal", json={"objective": f"go {tag}"})).is_success
    held = await fake_llm.wait_for_request(script="goal-superseded", step=0)
    user = {"role": "user", "content": [{"type": "text", "text": "stop that"}], "run": False}
    assert (await server.client.post(f"{base}/events", json=user)).status_code == 200
    assert await goal_updates(server, info["id"]) == [
        ("running", 0, True),
        ("interrupted", 0, False),
    ]
    assert (await server.client.post(f"{base}/pause")).status_code == 200
    assert await held.wait_done() == "aborted"


async def test_a_pause_ends_the_goal(server: LiveServer, fake_llm: FakeLLM) -> None:
    tag = fake_llm.script("goal-paused", [text("never sent", delay=30)])
    info = await create(server, fake_llm, title="no autotitle request")
    base = f"/api/conversations/{info['id']}"
    assert (await server.client.post(f"{base}/goal", json={"objective": f"go {tag}"})).is_success
    held = await fake_llm.wait_for_request(script="goal-paused", step=0)
    assert (await server.client.post(f"{base}/pause")).status_code == 200
    assert await held.wait_done() == "aborted"
    await wait_for_event(server, info["id"], goal_status("interrupted"))
    assert await goal_updates(server, info["id"]) == [
        ("running", 0, True),
        ("interrupted", 0, False),
    ]
    assert (await server.client.get(base)).json()["execution_status"] == "paused"


async def test_a_goal_cut_by_a_shutdown_resumes_after_the_restart(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    judge = FakeLLM(default=text(COMPLETE, delay=30))  # the first judge call is held
    await nursery.start(judge.serve)
    tag = judge.script("goal-restart", [text("first round")])
    settings = test_settings(tmp_path)
    first = await start_server(nursery, settings)
    info = await create(first, judge, title="no autotitle request")
    base = f"/api/conversations/{info['id']}"
    assert (await first.client.post(f"{base}/goal", json={"objective": f"do {tag}"})).is_success
    await judge.wait_for_request(predicate=lambda r: r.step is None and not r.tools)
    await first.aclose()  # the loop is cancelled mid-judge, and says so

    judge.default = text(COMPLETE)
    second = await start_server(nursery, settings)
    try:
        assert await goal_updates(second, info["id"]) == [
            ("running", 0, True),
            ("interrupted", 0, False),
        ]
        assert (await second.client.post(f"{base}/goal/resume")).status_code == 200
        await wait_for_event(second, info["id"], goal_status("complete"))
        assert (await goal_updates(second, info["id"]))[2:] == [
            ("running", 0, True),
            ("complete", 1, False),
        ]
    finally:
        await second.aclose()


async def test_a_goal_keeps_its_conversation_loaded(
    nursery: trio.Nursery, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Between runs (while the judge answers) nothing else uses the conversation: the loop
    itself keeps it from being unloaded as idle (an unload would wait for the loop, and
    every request to the conversation, `goal/stop` too, with it)."""
    judge = FakeLLM(default=text(COMPLETE, delay=1.5))  # longer than the idle time below
    await nursery.start(judge.serve)
    tag = judge.script("goal-loaded", [text("the round")])
    server = await start_server(nursery, test_settings(tmp_path, idle_unload_seconds=0.5))
    try:
        info = await create(server, judge, title="no autotitle request")
        base = f"/api/conversations/{info['id']}"
        assert (await server.client.post(f"{base}/goal", json={"objective": f"{tag}"})).is_success
        verdict = await judge.wait_for_request(predicate=lambda r: r.step is None and not r.tools)
        assert await verdict.wait_done() == "answered"  # 1 s past the idle time
        assert not [r for r in caplog.records if "unloaded after" in r.getMessage()]
        await wait_for_event(server, info["id"], goal_status("complete"))
    finally:
        await server.aclose()
