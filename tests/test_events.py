"""Live-server tests of the event API: search, get, batch get, messages, confirmation, and
the log surviving a restart. Real Hypercorn, httpx, the scripted LLM, real tools; waits
follow the conversation's socket or the fake LLM's request log, never the clock."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import trio
from trio_websocket import ConnectionClosed, open_websocket_url

from tests.conftest import (
    LiveServer,
    llm_settings,
    start_server,
    test_settings,
    wait_for_event,
    wait_status,
)
from trio_openhands.testing.fake_llm import FakeLLM, finish, text, tool_call

if TYPE_CHECKING:
    from pathlib import Path

    from trio_websocket import WebSocketConnection

    from trio_openhands.testing.fake_llm import RecordedRequest


def message(text_: str, run: bool = True) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "text", "text": text_}], "run": run}


async def create(server: LiveServer, fake_llm: FakeLLM, **body: Any) -> str:
    response = await server.client.post(
        "/conversations", json={"llm": llm_settings(fake_llm), **body}
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def send(server: LiveServer, conversation_id: str, text_: str, run: bool = True) -> None:
    response = await server.client.post(
        f"/conversations/{conversation_id}/events", json=message(text_, run)
    )
    assert response.status_code == 200, response.text


async def all_events(
    server: LiveServer, conversation_id: str, **params: Any
) -> list[dict[str, Any]]:
    """Every matching event, following `next_page_id` to the end."""
    items: list[dict[str, Any]] = []
    page_id: str | None = None
    while True:
        query = {**params, **({"page_id": page_id} if page_id else {})}
        response = await server.client.get(
            f"/conversations/{conversation_id}/events/search", params=query
        )
        assert response.status_code == 200, response.text
        page = response.json()
        items += page["items"]
        page_id = page["next_page_id"]
        if page_id is None:
            return items


async def llm_request(fake_llm: FakeLLM, **match: Any) -> RecordedRequest:
    """The fake LLM's first request matching `match`, waiting for it (never forever)."""
    with trio.fail_after(30):
        return await fake_llm.wait_for_request(**match)


def is_status(frame: dict[str, Any], *statuses: str) -> bool:
    return (
        frame.get("kind") == "ConversationStateUpdateEvent"
        and frame.get("key") == "execution_status"
        and frame.get("value") in statuses
    )


def kinds_of(events: list[dict[str, Any]]) -> list[str]:
    """The kinds of the events, state updates left out."""
    return [e["kind"] for e in events if e["kind"] != "ConversationStateUpdateEvent"]


def message_text(event: dict[str, Any]) -> str:
    return " ".join(part.get("text", "") for part in event["llm_message"]["content"])


def agent_says(text_: str) -> Any:
    return lambda e: (
        e["kind"] == "MessageEvent" and e["source"] == "agent" and text_ in message_text(e)
    )


async def read_until(
    socket: WebSocketConnection, predicate: Any, frames: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    with trio.fail_after(30):
        while True:
            frame = json.loads(await socket.get_message())
            if frames is not None:
                frames.append(frame)
            if predicate(frame):
                return frame


async def close_code(socket: WebSocketConnection) -> int | None:
    """Read (and drop) frames until the server closes the socket; its close code."""
    with trio.fail_after(30):
        try:
            while True:
                await socket.get_message()
        except ConnectionClosed as closed:
            return closed.reason.code if closed.reason is not None else None


# -- messages ---------------------------------------------------------------------------


async def test_message_with_run_is_processed_to_finished(
    server: LiveServer, fake_llm: FakeLLM
) -> None:
    tag = fake_llm.script("run-msg", [text("Processed it.")])
    conversation_id = await create(server, fake_llm)
    await send(server, conversation_id, f"note only {tag}", run=False)
    events = await all_events(server, conversation_id)
    assert kinds_of(events)[-1] == "MessageEvent"
    assert fake_llm.requests == []  # run=false: logged, not processed
    assert (await server.client.get(f"/conversations/{conversation_id}")).json()["status"] == "idle"

    url = server.ws_url(f"/conversations/{conversation_id}/events/socket")
    async with open_websocket_url(url) as socket:
        body = message(f"please do it {tag}")
        del body["run"]  # run defaults to true, as in the seed
        posted = await server.client.post(f"/conversations/{conversation_id}/events/", json=body)
        assert posted.status_code == 200, posted.text
        await read_until(socket, lambda f: is_status(f, "finished"))
    events = await all_events(server, conversation_id)
    user_texts = [
        message_text(e) for e in events if e["kind"] == "MessageEvent" and e["source"] == "user"
    ]
    assert user_texts == [f"note only {tag}", f"please do it {tag}"]
    # The reply, its LLM call's stats, then the settled status.
    assert message_text(events[-3]) == "Processed it."
    assert events[-2]["key"] == "stats"
    request = await llm_request(fake_llm, script="run-msg", step=0)
    assert "please do it" in json.dumps(request.messages)


async def test_message_sent_during_an_llm_call_is_processed(
    server: LiveServer, fake_llm: FakeLLM
) -> None:
    first = fake_llm.script("busy-first", [text("first answer", delay=1)])
    # The SDK merges the two user messages into one LLM message, so the fake counts
    # "first answer" as a step of this script: both steps say the same.
    second = fake_llm.script("busy-second", [text("second answer")] * 2)
    conversation_id = await create(server, fake_llm)
    await send(server, conversation_id, f"one {first}")
    in_flight = await llm_request(fake_llm, script="busy-first", step=0)
    await send(server, conversation_id, f"two {second}")  # lands while the LLM is answering
    with trio.fail_after(30):
        assert await in_flight.wait_done() == "answered"
    await wait_for_event(server, conversation_id, agent_says("second answer"))
    await wait_status(server, conversation_id, "finished")
    request = await llm_request(fake_llm, script="busy-second")
    assert "two" in json.dumps(request.messages)
    texts = [
        message_text(e) for e in await all_events(server, conversation_id, kind="MessageEvent")
    ]
    assert texts == [f"one {first}", f"two {second}", "first answer", "second answer"] or texts == [
        f"one {first}",
        "first answer",
        f"two {second}",
        "second answer",
    ]


async def test_message_sent_as_a_run_finishes_is_processed(
    server: LiveServer, fake_llm: FakeLLM
) -> None:
    """Sent the moment the final reply is logged, while the run is still winding down:
    processed by the current run or by the next, never stranded."""
    first = fake_llm.script("tail-first", [text("first done")])
    second = fake_llm.script("tail-second", [text("second done")] * 2)
    conversation_id = await create(server, fake_llm)
    url = server.ws_url(f"/conversations/{conversation_id}/events/socket")
    async with open_websocket_url(url) as socket:
        await send(server, conversation_id, f"start {first}")
        await read_until(socket, agent_says("first done"))
        await send(server, conversation_id, f"more {second}")
        await read_until(socket, agent_says("second done"))
    await wait_status(server, conversation_id, "finished")
    kinds = [
        (e["source"], message_text(e))
        for e in await all_events(server, conversation_id, kind="MessageEvent")
    ]
    assert kinds[-1] == ("agent", "second done")


# -- search -----------------------------------------------------------------------------


async def finished_conversation(server: LiveServer, fake_llm: FakeLLM, name: str) -> str:
    """A conversation whose log has messages from both sides, an action and its observation."""
    tag = fake_llm.script(
        name, [tool_call("think", {"thought": "Pondering"}), text("All DONE here")]
    )
    conversation_id = await create(server, fake_llm)
    url = server.ws_url(f"/conversations/{conversation_id}/events/socket")
    async with open_websocket_url(url) as socket:
        await send(server, conversation_id, f"Hello Agent {tag}")
        await read_until(socket, lambda f: is_status(f, "finished"))
    return conversation_id


async def test_search_filters_and_sort_order(server: LiveServer, fake_llm: FakeLLM) -> None:
    from openhands.sdk.event import MessageEvent

    conversation_id = await finished_conversation(server, fake_llm, "filters")
    everything = await all_events(server, conversation_id)
    assert kinds_of(everything) == [
        "SystemPromptEvent",
        "MessageEvent",
        "ActionEvent",
        "ObservationEvent",
        "MessageEvent",
    ]

    def ids(events: list[dict[str, Any]]) -> list[str]:
        return [e["id"] for e in events]

    # State updates are logged events, which `kind` finds (or leaves out).
    updates = [e for e in everything if e["kind"] == "ConversationStateUpdateEvent"]
    found = await all_events(server, conversation_id, kind="ConversationStateUpdateEvent")
    assert ids(found) == ids(updates)
    statuses = [e["value"] for e in updates if e["key"] == "execution_status"]
    assert statuses == ["running", "finished"]
    assert everything[-1] == updates[-1]  # the settled status, after the run's last event

    messages = [e for e in everything if e["kind"] == "MessageEvent"]
    assert ids(await all_events(server, conversation_id, kind="MessageEvent")) == ids(messages)
    fqn = f"{MessageEvent.__module__}.MessageEvent"
    assert ids(await all_events(server, conversation_id, kind=fqn)) == ids(messages)
    assert await all_events(server, conversation_id, kind="NoSuchEvent") == []
    for source in ("agent", "user", "environment"):
        expected = [e for e in everything if e["source"] == source]
        assert ids(await all_events(server, conversation_id, source=source)) == ids(expected)
    # body: case-insensitive, messages only (the action's "Pondering" is not a message)
    assert ids(await all_events(server, conversation_id, body="all done")) == [messages[1]["id"]]
    assert ids(await all_events(server, conversation_id, body="HELLO agent")) == [messages[0]["id"]]
    assert await all_events(server, conversation_id, body="pondering") == []
    # combined filters
    combined = await all_events(server, conversation_id, kind="MessageEvent", source="agent")
    assert ids(combined) == [messages[1]["id"]]
    # sort order
    newest_first = await all_events(server, conversation_id, sort_order="TIMESTAMP_DESC")
    assert ids(newest_first) == ids(everything)[::-1]
    assert ids(await all_events(server, conversation_id, sort_order="TIMESTAMP")) == ids(everything)

    # timestamps: naive values are server-local time, as the SDK stamps events; an aware
    # value is converted first. Expected sets come from the events' own timestamps.
    stamps = [datetime.fromisoformat(e["timestamp"]) for e in everything]
    pivot = stamps[2]
    later = [e["id"] for e, t in zip(everything, stamps, strict=True) if t >= pivot]
    earlier = [e["id"] for e, t in zip(everything, stamps, strict=True) if t < pivot]
    assert earlier
    assert later
    assert ids(await all_events(server, conversation_id, timestamp__gte=pivot.isoformat())) == later
    assert (
        ids(await all_events(server, conversation_id, timestamp__lt=pivot.isoformat())) == earlier
    )
    aware = pivot.astimezone().astimezone(timezone(timedelta(hours=5, minutes=30)))
    assert ids(await all_events(server, conversation_id, timestamp__gte=aware.isoformat())) == later
    window = await all_events(
        server,
        conversation_id,
        timestamp__gte=stamps[1].isoformat(),
        timestamp__lt=stamps[3].isoformat(),
        sort_order="TIMESTAMP_DESC",
    )
    expected = [
        e["id"] for e, t in zip(everything, stamps, strict=True) if stamps[1] <= t < stamps[3]
    ]
    assert ids(window) == expected[::-1]


async def test_search_errors(server: LiveServer, fake_llm: FakeLLM) -> None:
    conversation_id = await create(server, fake_llm)
    search = f"/conversations/{conversation_id}/events/search"
    unknown_page = await server.client.get(search, params={"page_id": "no-such-event"})
    assert unknown_page.status_code == 400
    assert "page_id" in unknown_page.json()["detail"]
    for params in ({"limit": 0}, {"limit": 101}, {"source": "martians"}, {"sort_order": "RANDOM"}):
        response = await server.client.get(search, params=params)
        assert response.status_code == 422, params
    bad_time = await server.client.get(search, params={"timestamp__gte": "yesterday"})
    assert bad_time.status_code == 422
    assert bad_time.json()["detail"][0]["loc"] == ["query", "timestamp__gte"]
    missing = "00000000-0000-0000-0000-000000000000"
    not_found = await server.client.get(f"/conversations/{missing}/events/search")
    assert not_found.status_code == 404
    assert missing in not_found.json()["detail"]
    assert (await server.client.get("/conversations/nope/events/search")).status_code == 422
    # trailing slash accepted
    assert (await server.client.get(search + "/")).status_code == 200


async def test_paging_while_a_run_appends_neither_skips_nor_repeats(
    server: LiveServer, fake_llm: FakeLLM
) -> None:
    steps = 6
    tag = fake_llm.script(
        "paging",
        [*(tool_call("think", {"thought": f"step {i}"}) for i in range(steps)), text("end")],
    )
    conversation_id = await create(server, fake_llm)
    search = f"/conversations/{conversation_id}/events/search"
    await send(server, conversation_id, f"go {tag}")

    # Oldest first, one event per page, taking a page each time the run makes an LLM call:
    # every step appends an action and an observation between two of our requests.
    ascending: list[dict[str, Any]] = []
    descending: list[dict[str, Any]] = []
    desc_page_id: str | None = None
    page_id: str | None = None
    step = 0
    while True:
        if step <= steps:
            await llm_request(fake_llm, script="paging", step=step)
            step += 1
        params = {"limit": 1, **({"page_id": page_id} if page_id else {})}
        page = (await server.client.get(search, params=params)).json()
        ascending += page["items"]
        page_id = page["next_page_id"]
        if page_id is None:
            break
        if step == 1:  # newest first, started while the run is young
            first_desc = (
                await server.client.get(search, params={"limit": 2, "sort_order": "TIMESTAMP_DESC"})
            ).json()
            descending = list(first_desc["items"])
            desc_page_id = first_desc["next_page_id"]
    assert len(ascending) >= steps  # the paging really overlapped the run
    await wait_status(server, conversation_id, "finished")
    final = await all_events(server, conversation_id)
    assert [e["id"] for e in ascending] == [e["id"] for e in final[: len(ascending)]]

    # The newest-first walk, continued after the run: exactly the log as it was when it
    # started, backwards; events appended since do not leak into its later pages.
    while desc_page_id is not None:
        page = (
            await server.client.get(
                search, params={"limit": 2, "sort_order": "TIMESTAMP_DESC", "page_id": desc_page_id}
            )
        ).json()
        descending += page["items"]
        desc_page_id = page["next_page_id"]
    newest_seen = [e["id"] for e in final].index(descending[0]["id"])
    assert newest_seen < len(final) - 1  # the run went on after the walk began
    assert [e["id"] for e in descending] == [e["id"] for e in final[: newest_seen + 1]][::-1]


# -- get and batch get ------------------------------------------------------------------


async def test_get_and_batch_get(server: LiveServer, fake_llm: FakeLLM) -> None:
    conversation_id = await finished_conversation(server, fake_llm, "getting")
    everything = await all_events(server, conversation_id)
    base = f"/conversations/{conversation_id}/events"
    for event in everything:
        got = await server.client.get(f"{base}/{event['id']}")
        assert got.status_code == 200
        assert got.json() == event
    missing = await server.client.get(f"{base}/no-such-event")
    assert missing.status_code == 404

    wanted = [everything[3]["id"], "unknown-id", everything[0]["id"], everything[3]["id"]]
    batch = await server.client.get(base, params={"event_ids": wanted})
    assert batch.status_code == 200
    assert batch.json() == [everything[3], None, everything[0], everything[3]]
    assert (
        await server.client.get(base + "/", params={"event_ids": wanted})
    ).json() == batch.json()
    hundred = await server.client.get(base, params={"event_ids": ["x"] * 100})
    assert hundred.json() == [None] * 100
    too_many = await server.client.get(base, params={"event_ids": ["x"] * 101})
    assert too_many.status_code == 422
    assert (await server.client.get(base)).status_code == 422  # event_ids is required
    other = "00000000-0000-0000-0000-000000000000"
    assert (
        await server.client.get(f"/conversations/{other}/events", params={"event_ids": ["x"]})
    ).status_code == 404
    assert (await server.client.get(f"/conversations/{other}/events/x")).status_code == 404


# -- the SDK's own serialization --------------------------------------------------------


async def test_events_are_the_sdks_serialization(server: LiveServer, fake_llm: FakeLLM) -> None:
    from openhands.sdk.event import Event

    tag = fake_llm.script(
        "serial", [tool_call("terminal", {"command": "echo round-trip"}), finish("ok")]
    )
    conversation_id = await create(server, fake_llm, tools=[{"name": "terminal"}])
    await send(server, conversation_id, f"run it {tag}")
    await wait_status(server, conversation_id, "finished")
    events = await all_events(server, conversation_id)
    kinds = {e["kind"] for e in events}
    assert {"SystemPromptEvent", "MessageEvent", "ActionEvent", "ObservationEvent"} <= kinds
    for item in events:
        restored = Event.model_validate(item)
        assert type(restored).__name__ == item["kind"]
        assert restored.id == item["id"]
        assert restored.model_dump(mode="json") == item
    terminal = [e for e in events if e["kind"] == "ObservationEvent"]
    assert any("round-trip" in json.dumps(e["observation"]) for e in terminal)


# -- confirmation -----------------------------------------------------------------------


async def test_confirmation_accept_executes_and_the_run_continues(
    server: LiveServer, fake_llm: FakeLLM
) -> None:
    tag = fake_llm.script(
        "accept", [tool_call("terminal", {"command": "touch accepted.txt"}), text("all set")]
    )
    conversation_id = await create(
        server, fake_llm, tools=[{"name": "terminal"}], confirmation_mode=True
    )
    respond = f"/conversations/{conversation_id}/events/respond_to_confirmation"
    nothing = await server.client.post(respond, json={"accept": True})
    assert nothing.status_code == 409  # nothing pending yet
    await send(server, conversation_id, f"make a file {tag}")
    await wait_status(server, conversation_id, "waiting_for_confirmation")
    assert not (server.settings.workspace_dir / "accepted.txt").exists()
    accepted = await server.client.post(respond, json={"accept": True})
    assert accepted.status_code == 200, accepted.text
    await wait_for_event(server, conversation_id, agent_says("all set"))
    await wait_status(server, conversation_id, "finished")
    assert (server.settings.workspace_dir / "accepted.txt").exists()
    kinds = [e["kind"] for e in await all_events(server, conversation_id)]
    assert kinds.count("ObservationEvent") == 1
    assert "UserRejectObservation" not in kinds
    assert (await server.client.post(respond, json={"accept": True})).status_code == 409


async def test_accept_right_on_the_waiting_frame_is_not_a_409(
    server: LiveServer, fake_llm: FakeLLM
) -> None:
    """The SDK says `waiting_for_confirmation` while its run task is still winding down;
    the log holds that status back until the run has ended, so a client that acts on the
    frame at once finds REST saying the same, and its answer is taken."""
    tag = fake_llm.script(
        "early", [tool_call("terminal", {"command": "touch early.txt"}), text("early done")]
    )
    conversation_id = await create(
        server, fake_llm, tools=[{"name": "terminal"}], confirmation_mode=True
    )
    respond = f"/conversations/{conversation_id}/events/respond_to_confirmation"
    url = server.ws_url(f"/conversations/{conversation_id}/events/socket")
    async with open_websocket_url(url) as socket:
        await send(server, conversation_id, f"go {tag}")
        await read_until(socket, lambda f: is_status(f, "waiting_for_confirmation"))
        accepted = await server.client.post(respond, json={"accept": True})
        assert accepted.status_code == 200, accepted.text
        await read_until(socket, agent_says("early done"))
    await wait_status(server, conversation_id, "finished")
    assert (server.settings.workspace_dir / "early.txt").exists()


async def test_confirmation_reject_records_the_reason_for_the_agent(
    server: LiveServer, fake_llm: FakeLLM
) -> None:
    tag = fake_llm.script(
        "reject", [tool_call("terminal", {"command": "touch rejected.txt"}), text("understood")]
    )
    conversation_id = await create(
        server, fake_llm, tools=[{"name": "terminal"}], confirmation_mode=True
    )
    respond = f"/conversations/{conversation_id}/events/respond_to_confirmation"
    await send(server, conversation_id, f"make a file {tag}")
    await wait_status(server, conversation_id, "waiting_for_confirmation")
    rejected = await server.client.post(respond, json={"accept": False, "reason": "Not in my repo"})
    assert rejected.status_code == 200, rejected.text
    info = (await server.client.get(f"/conversations/{conversation_id}")).json()
    assert info["status"] != "waiting_for_confirmation"
    events = await all_events(server, conversation_id)
    rejection = [e for e in events if e["kind"] == "UserRejectObservation"]
    assert len(rejection) == 1
    assert rejection[0]["rejection_reason"] == "Not in my repo"
    action = next(e for e in events if e["kind"] == "ActionEvent")
    assert rejection[0]["action_id"] == action["id"]
    assert not (server.settings.workspace_dir / "rejected.txt").exists()
    assert (await server.client.post(respond, json={"accept": False})).status_code == 409
    # The agent sees the rejection and its reason on its next call.
    after = fake_llm.script("reject-after", [text("understood")])
    await send(server, conversation_id, f"ok then {after}")
    request = await llm_request(fake_llm, script="reject-after", step=0)
    assert "Not in my repo" in json.dumps(request.messages)
    await wait_status(server, conversation_id, "finished")
    assert not (server.settings.workspace_dir / "rejected.txt").exists()


# -- restart ----------------------------------------------------------------------------


async def test_events_survive_a_restart(tmp_path: Path, fake_llm: FakeLLM) -> None:
    settings = test_settings(tmp_path)
    tag = fake_llm.script(
        "restart", [tool_call("terminal", {"command": "echo before"}), text("before restart")]
    )
    async with trio.open_nursery() as first_nursery:
        first = await start_server(first_nursery, settings)
        conversation_id = await create(first, fake_llm, tools=[{"name": "terminal"}])
        await send(first, conversation_id, f"go {tag}")
        await wait_status(first, conversation_id, "finished")
        before = await all_events(first, conversation_id)
        url = first.ws_url(f"/conversations/{conversation_id}/events/socket")
        async with open_websocket_url(url) as socket:
            await first.client.aclose()
            first.stop.set()  # shutdown closes open sockets with 1001
            assert await close_code(socket) == 1001

    async with trio.open_nursery() as second_nursery:
        second = await start_server(second_nursery, settings)
        try:
            after = await all_events(second, conversation_id)
            assert after == before  # same events, same ids, same order, same JSON
            again = await second.client.get(
                f"/conversations/{conversation_id}/events/{before[2]['id']}"
            )
            assert again.json() == before[2]
            # The log goes on from where it was.
            more = fake_llm.script("restart-more", [text("after restart")])
            await send(second, conversation_id, f"again {more}")
            await wait_for_event(second, conversation_id, agent_says("after restart"))
            await wait_status(second, conversation_id, "finished")
            extended = await all_events(second, conversation_id)
            assert extended[: len(before)] == before
            # The settled status after the last message; persisted, so a restart keeps it.
            assert (extended[-1]["key"], extended[-1]["value"]) == ("execution_status", "finished")
            assert message_text(extended[-3]) == "after restart"  # and its call's stats
        finally:
            second.stop.set()
            await second.client.aclose()
