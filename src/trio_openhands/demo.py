"""`openhands-server demo`: the scripted LLM, the server, and one conversation end to end.

Needs no API key: the LLM is the scripted one shipped for tests, reached through the real
litellm path. Prints each event as the WebSocket delivers it.
"""

from __future__ import annotations

import json
import tempfile
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import trio
from trio_websocket import open_websocket_url

from trio_openhands.server import serve
from trio_openhands.testing.fake_llm import FakeLLM, finish, tool_call

if TYPE_CHECKING:
    from trio_openhands.settings import Settings


def describe(event: dict[str, Any]) -> str:
    kind = event.get("kind", "?")
    if kind == "MessageEvent":
        parts = event["llm_message"]["content"]
        return f"{event['source']} says: " + " ".join(p.get("text", "") for p in parts)
    if kind == "ActionEvent":
        return f"agent calls {event.get('tool_name')}: {json.dumps(event.get('action'))[:120]}"
    if kind == "ObservationEvent":
        return f"{event.get('tool_name')} returns: {json.dumps(event.get('observation'))[:160]}"
    if kind == "ConversationStateUpdateEvent":
        return f"state {event.get('key')} = {json.dumps(event.get('value'))[:60]}"
    return kind


async def run_demo(settings: Settings) -> int:
    llm = FakeLLM()
    tag = llm.script(
        "demo",
        [
            tool_call("terminal", {"command": "echo hello from the demo && uname -s"}),
            finish("All done."),
        ],
    )
    with tempfile.TemporaryDirectory(prefix="trio-openhands-demo-") as folder:
        settings = settings.with_changes(
            conversations_dir=Path(folder) / "conversations", workspace_dir=Path(folder) / "project"
        )
        async with trio.open_nursery() as nursery:
            llm_url = await nursery.start(llm.serve)
            stop = trio.Event()
            binds: list[str] = await nursery.start(partial(serve, settings, shutdown_trigger=stop))
            print(f"scripted LLM at {llm_url}, server at {binds[0]}")
            async with httpx.AsyncClient(base_url=binds[0], timeout=60) as client:
                body = {
                    "llm": {
                        "model": "openai/demo",
                        "base_url": llm_url,
                        "api_key": "demo",
                        "num_retries": 0,
                        "input_cost_per_token": 0,
                        "output_cost_per_token": 0,
                    },
                    "tools": [{"name": "terminal"}],
                }
                created = (await client.post("/conversations", json=body)).json()
                conversation_id = created["id"]
                print(f"conversation {conversation_id} created, status {created['status']}")
                socket_url = (
                    binds[0].replace("http", "ws")
                    + f"/conversations/{conversation_id}/events/socket"
                )
                async with open_websocket_url(socket_url) as socket:
                    message = {
                        "role": "user",
                        "content": [{"type": "text", "text": f"Say hello. {tag}"}],
                    }
                    await client.post(f"/conversations/{conversation_id}/events", json=message)
                    with trio.fail_after(60):
                        while True:
                            event = json.loads(await socket.get_message())
                            print(f"  event: {describe(event)}")
                            status = (await client.get(f"/conversations/{conversation_id}")).json()[
                                "status"
                            ]
                            if status in ("finished", "error", "stuck"):
                                break
                print(f"conversation ended: {status}")
                await client.delete(f"/conversations/{conversation_id}")
            stop.set()
            nursery.cancel_scope.cancel()
    return 0 if status == "finished" else 1
