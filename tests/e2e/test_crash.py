"""Every acknowledged message survives a kill -9 in the middle of a burst of posts.

Slow (two server starts per round, five rounds): run by `make test-e2e`, not `make test`.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import trio

from tests.conftest import start_cli_server

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.e2e

POSTERS = 8


async def message_texts(client: httpx.AsyncClient, conversation_id: str) -> list[str]:
    """Every user message's text in the conversation's log, page after page."""
    texts: list[str] = []
    page_id: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 100, "kind": "MessageEvent"}
        if page_id:
            params["page_id"] = page_id
        page = await client.get(
            f"/api/conversations/{conversation_id}/events/search", params=params
        )
        assert page.status_code == 200, page.text
        body = page.json()
        for event in body["items"]:
            if event["source"] == "user":
                texts.extend(part["text"] for part in event["llm_message"]["content"])
        page_id = body["next_page_id"]
        if not page_id:
            return texts


@pytest.mark.parametrize("round_", range(5))
async def test_every_acknowledged_message_survives_kill_9(tmp_path: Path, round_: int) -> None:
    kill_after = random.Random(round_).randrange(40, 120)  # acknowledged messages before the kill
    env = {"OH_SECRET_KEY": "crash-test", "OPENHANDS_WORKSPACE_DIR": str(tmp_path / "project")}
    server = await start_cli_server(tmp_path, wait_for="/ready", **env)
    process = server.process
    acknowledged: list[str] = []
    url = server.url
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            body = {
                "agent": {
                    "kind": "Agent",
                    "llm": {"model": "openai/none", "base_url": "http://127.0.0.1:9/v1"},
                    "tools": [],
                },
                "workspace": {"working_dir": str(tmp_path / "project")},
                "autotitle": False,
            }
            created = await client.post("/api/conversations", json=body)
            assert created.status_code == 201, created.text
            conversation_id = created.json()["id"]
            enough = trio.Event()

            async def poster(index: int) -> None:
                for number in range(10_000):
                    text = f"poster {index} message {number}"
                    message = {"role": "user", "content": [{"type": "text", "text": text}]}
                    try:
                        answer = await client.post(
                            f"/api/conversations/{conversation_id}/events",
                            json={**message, "run": False},
                        )
                    except httpx.TransportError:
                        return  # the server is gone: this message was never acknowledged
                    assert answer.status_code == 200, answer.text
                    acknowledged.append(text)
                    if len(acknowledged) >= kill_after:
                        enough.set()

            async with trio.open_nursery() as nursery:
                for index in range(POSTERS):
                    nursery.start_soon(poster, index)
                await enough.wait()
                process.kill()  # SIGKILL, with the other posters' requests in flight
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()

    restarted = await start_cli_server(tmp_path, wait_for="/ready", **env)
    try:
        async with httpx.AsyncClient(base_url=restarted.url, timeout=30) as client:
            logged = await message_texts(client, conversation_id)
    finally:
        restarted.process.kill()
        await restarted.process.wait()
    missing = set(acknowledged) - set(logged)
    assert not missing, f"{len(missing)} of {len(acknowledged)} acknowledged messages lost"
    assert len(logged) == len(set(logged)), "a message is logged twice"
    print(f"round {round_}: {len(acknowledged)} acknowledged, {len(logged)} logged after restart")
