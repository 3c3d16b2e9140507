"""Conversation controls that block on the LLM are owned by the conversation's scope: a
delete does not wait for them. (What each control does is tested through the official
client in tests/test_sdk_client.py.)"""

from __future__ import annotations

import trio

from tests.conftest import LiveServer
from tests.test_api_dialect import create, message
from trio_openhands.testing.fake_llm import FakeLLM, text


async def test_delete_does_not_wait_for_a_side_question(
    server: LiveServer, fake_llm: FakeLLM
) -> None:
    first = fake_llm.script("owned-first", [text("first answer")])
    info = await create(server, fake_llm, initial_message=message(f"hi {first}", run=True))
    base = f"/api/conversations/{info['id']}"
    await fake_llm.wait_for_request(script="owned-first", step=0)
    slow = fake_llm.script("owned-ask", [text("too late", delay=30)])
    answers: list[int] = []

    async def ask() -> None:
        response = await server.client.post(f"{base}/ask_agent", json={"question": f"? {slow}"})
        answers.append(response.status_code)

    with trio.fail_after(10):  # far below the held answer's 30 s
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask)
            asked = await fake_llm.wait_for_request(script="owned-ask")
            assert (await server.client.delete(base)).status_code == 200
    assert answers == [404]
    assert asked.outcome == "pending"  # the LLM call was never answered


async def test_acp_model_switch_is_a_400_and_the_runtime_is_local(
    server: LiveServer, fake_llm: FakeLLM
) -> None:
    info = await create(server, fake_llm)
    base = f"/api/conversations/{info['id']}"
    refused = await server.client.post(f"{base}/switch_acp_model", json={"model": "other"})
    assert refused.status_code == 400  # the SDK's own refusal for an agent that is not ACP
    assert "ACP" in refused.json()["detail"]
    expected = {"runtime_status": "available", "can_resume": True, "runtime_error": None}
    assert info["runtime_info"] == expected
    assert (await server.client.get(f"{base}/runtime")).json() == expected
    assert (await server.client.post(f"{base}/runtime/reprovision")).json() == expected
    assert (await server.client.delete(base)).status_code == 200
    assert (await server.client.get(f"{base}/runtime")).status_code == 404
