"""Two instances over one database, each serving what the other made: a socket on the
instance that does not own the conversation, the profiles, a fork."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import trio
from trio_websocket import open_websocket_url

from tests.conftest import wait_status
from tests.test_conversations import start
from tests.test_postgres_server import two_instances
from trio_openhands.testing.fake_llm import FakeLLM, text

if TYPE_CHECKING:
    from pathlib import Path

    from trio_websocket import WebSocketConnection

BAD_FRAMES: tuple[Any, ...] = (
    {"role": "user", "content": []},  # does not validate
    "not json",  # does not parse
    {"role": "user", "content": [{"type": "text", "text": "hi"}], "run": "maybe"},
)


async def answers_to_bad_frames(socket: WebSocketConnection) -> list[dict[str, Any]]:
    """Each bad frame sent after an `auth` frame: the answers, without their own id and
    time. The auth frames get none, so each answer is its bad frame's. The owner's
    `full_state` snapshots (a run's last one may come after GET said `finished`) are
    passed over: only the owner sends them."""
    answers = []
    for frame in BAD_FRAMES:
        await socket.send_message(json.dumps({"type": "auth", "session_api_key": "any"}))
        await socket.send_message(frame if isinstance(frame, str) else json.dumps(frame))
        answer = json.loads(await socket.get_message())
        while answer.get("key") == "full_state":
            answer = json.loads(await socket.get_message())
        answers.append({k: v for k, v in answer.items() if k not in ("id", "timestamp")})
    return answers


async def test_a_socket_on_a_non_owner_answers_as_the_owners_socket_does(
    nursery: trio.Nursery, tmp_path: Path, postgres_url: str, fake_llm: FakeLLM
) -> None:
    a, b = await two_instances(nursery, tmp_path, postgres_url)
    try:
        tag = fake_llm.script("answered", [text("done")])
        cid = (await start(a, fake_llm, f"hello {tag}", title="no autotitle"))["id"]
        await wait_status(a, cid, "finished")
        with trio.fail_after(30):
            async with (
                open_websocket_url(a.ws_url(f"/sockets/events/{cid}")) as api_on_a,
                open_websocket_url(b.ws_url(f"/sockets/events/{cid}")) as api_on_b,
                open_websocket_url(a.ws_url(f"/conversations/{cid}/events/socket")) as seed_on_a,
                open_websocket_url(b.ws_url(f"/conversations/{cid}/events/socket")) as seed_on_b,
            ):
                owner_answers = await answers_to_bad_frames(api_on_a)
                assert [answer["kind"] for answer in owner_answers] == ["ServerErrorEvent"] * 3
                assert await answers_to_bad_frames(api_on_b) == owner_answers
                # The seed dialect keeps its own error frame, on either instance.
                bad = json.dumps(BAD_FRAMES[0])
                await seed_on_a.send_message(bad)
                await seed_on_b.send_message(bad)
                seed_answer = json.loads(await seed_on_a.get_message())
                assert (seed_answer["type"], seed_answer["code"]) == ("error", 422)
                assert json.loads(await seed_on_b.get_message()) == seed_answer
    finally:
        await a.aclose()
        await b.aclose()
