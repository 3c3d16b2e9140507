"""A clean error log under load: many conversations at once leave no ERROR line behind.

litellm keeps process-wide asyncio state (its async logging worker, its cached aiohttp
sessions); with an asyncio loop per conversation it got bound to whichever loop touched it
first, and the log filled with "Task was destroyed but it is pending!", "Unclosed client
session", "Task exception was never retrieved" and "cannot reuse already awaited coroutine".
"""

from __future__ import annotations

import gc
import logging
from typing import TYPE_CHECKING

import trio

from tests.conftest import LiveServer, llm_settings, wait_status
from trio_openhands.testing.fake_llm import FakeLLM, text, tool_call

if TYPE_CHECKING:
    import pytest

CONVERSATIONS = 12
KNOWN_LINES = (
    "Task was destroyed but it is pending",
    "Unclosed client session",
    "Unclosed connector",
    "Task exception was never retrieved",
    "cannot reuse already awaited coroutine",
)


async def run_wave(server: LiveServer, fake_llm: FakeLLM, wave: int) -> list[str]:
    """CONVERSATIONS conversations of three LLM calls each, all at once, to `finished`."""
    ids: list[str] = []

    async def one(index: int) -> None:
        tag = fake_llm.script(
            f"wave{wave}-{index}",
            [
                tool_call("think", {"thought": f"first {index}"}),
                text(f"done {index}"),
            ],
        )
        body = {
            "llm": llm_settings(fake_llm),
            "initial_message": {
                "role": "user",
                "content": [{"type": "text", "text": f"go {tag}"}],
            },
        }
        response = await server.client.post("/conversations", json=body)
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
        await wait_status(server, ids[-1], "finished")

    async with trio.open_nursery() as nursery:
        for index in range(CONVERSATIONS):
            nursery.start_soon(one, index)
    return ids


async def test_many_conversations_log_no_error(
    server: LiveServer, fake_llm: FakeLLM, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    first = await run_wave(server, fake_llm, 1)
    # Deleting closes what each conversation held; a second wave then runs after them.
    for conversation_id in first:
        assert (await server.client.delete(f"/conversations/{conversation_id}")).status_code == 200
    await run_wave(server, fake_llm, 2)
    await server.aclose()
    gc.collect()  # what is left unclosed or pending is reported when it is collected

    lines = [f"{r.levelname} {r.name}: {r.getMessage()}" for r in caplog.records]
    errors = [line for line in lines if line.startswith(("ERROR", "CRITICAL"))]
    assert not [line for line in lines if any(known in line for known in KNOWN_LINES)], lines
    assert not errors, errors
